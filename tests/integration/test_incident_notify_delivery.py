"""Notifications against real HTTP receivers, in process: every channel's request as its API wants
it, 429 retried after Retry-After, 500 given up after the bounded attempts while the other channels
still deliver, a hanging receiver cut by the deadline; a failed run pages and the next success
resolves the same key; every outcome is logged, audited and counted, no secret written anywhere."""

from __future__ import annotations

import json
import time

import pytest

from aep_ops import config
from aep_ops.incident.notify import Notice, after_run, dispatch
from aep_ops.incident import notify_state
from tests.conftest import write_config
from tests.support.notify_receivers import HANG, notify_receivers

ROUTING_KEY = "pdRoutingKey-7f3a9c1e5b2d4f60a8"
API_KEY = "ogApiKey-2b9e7d1c4a6f3e58"
SECRETS = {"AEP_TEST_PD_KEY": ROUTING_KEY, "AEP_TEST_OG_KEY": API_KEY}


@pytest.fixture
def world(tmp_path, monkeypatch):
    with notify_receivers() as rx:
        token = rx.slack.url.rsplit("/", 1)[1]
        for name, value in {**SECRETS, "AEP_TEST_SLACK_HOOK": rx.slack.url}.items():
            monkeypatch.setenv(name, value)

        def load(**notify):
            extra = "".join(f"      {k}: {json.dumps(v)}\n" for k, v in notify.items())
            write_config(tmp_path / "aep-ops.yaml", (
                "environments:\n  dev:\n    notify:\n"
                f"      pagerduty: {{routing_key: 'env:AEP_TEST_PD_KEY', url: '{rx.pagerduty.url}'}}\n"
                f"      opsgenie: {{api_key: 'env:AEP_TEST_OG_KEY', url: '{rx.opsgenie.url}'}}\n"
                "      slack: {webhook: 'env:AEP_TEST_SLACK_HOOK'}\n" + extra), monkeypatch)
            return config.load("dev")

        rx.load, rx.token = load, token
        yield rx


def secrets_absent(state_dir, token):
    for path in sorted(p for p in state_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for value in (ROUTING_KEY, API_KEY, token):
            assert value.encode() not in data, f"{value[:6]}... written to {path}"


def audit_lines(state_dir):
    path = state_dir / "logs" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_trigger_reaches_every_channel_as_its_api_wants(world, state_dir):
    settings = world.load(timeout_seconds=2, retries=0)
    notice = Notice("trigger", "aep-ops/dev/manual", "dev", "API 5xx above 5%", "error")
    outcomes = dispatch(settings, notice)
    assert [(o.channel, o.ok, o.attempts) for o in outcomes] == [("pagerduty", True, 1), ("opsgenie", True, 1),
                                                                ("slack", True, 1)]
    (pd,), (og,), (sl,) = world.pagerduty.requests, world.opsgenie.requests, world.slack.requests
    assert pd.path == "/v2/enqueue" and pd.headers["Content-Type"] == "application/json"
    assert pd.body["routing_key"] == ROUTING_KEY and pd.body["event_action"] == "trigger"
    assert pd.body["dedup_key"] == "aep-ops/dev/manual" and pd.body["payload"]["summary"] == "API 5xx above 5%"
    assert pd.body["payload"]["severity"] == "error"
    assert og.path == "/v2/alerts" and og.headers["Authorization"] == f"GenieKey {API_KEY}"
    assert og.body["alias"] == "aep-ops/dev/manual" and og.body["message"] == "API 5xx above 5%"
    assert og.body["priority"] == "P2"
    assert sl.path.endswith(world.token) and "API 5xx above 5%" in sl.body["text"]
    assert notify_state.open_channels(settings, "aep-ops/dev/manual") == ["opsgenie", "pagerduty", "slack"]
    assert {r["target"] for r in audit_lines(state_dir)} == {"pagerduty@dev", "opsgenie@dev", "slack@dev"}

    outcomes = dispatch(settings, Notice("resolve", "aep-ops/dev/manual", "dev", "", "error"))
    assert all(o.ok for o in outcomes)
    assert world.pagerduty.requests[1].body == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                                                "dedup_key": "aep-ops/dev/manual"}
    assert world.opsgenie.requests[1].path == "/v2/alerts/aep-ops/dev/manual/close?identifierType=alias"
    assert notify_state.open_channels(settings, "aep-ops/dev/manual") == []
    secrets_absent(state_dir, world.token)


def test_429_twice_is_retried_after_retry_after_then_delivered(world, state_dir):
    settings = world.load(timeout_seconds=2, retries=3, deadline_seconds=20)
    world.pagerduty.retry_after = "1"
    world.pagerduty.answer(429, 429)
    world.slack.answer(429)
    outcomes = dispatch(settings, Notice("trigger", "k-429", "dev", "retry me", "warning"))
    assert [(o.channel, o.ok) for o in outcomes] == [("pagerduty", True), ("opsgenie", True), ("slack", True)]
    assert outcomes[0].attempts == 3 and outcomes[2].attempts == 2
    times = [r.at for r in world.pagerduty.requests]
    assert len(times) == 3 and all(b - a >= 0.9 for a, b in zip(times, times[1:])), "Retry-After: 1 was honoured"
    assert [r.body["dedup_key"] for r in world.pagerduty.requests] == ["k-429"] * 3


def test_500_forever_is_bounded_and_the_others_still_deliver(world, state_dir):
    settings = world.load(timeout_seconds=2, retries=2)
    world.opsgenie.answer(always=500)
    outcomes = dispatch(settings, Notice("trigger", "k-500", "dev", "half down", "critical"))
    by = {o.channel: o for o in outcomes}
    assert by["pagerduty"].ok and by["slack"].ok and not by["opsgenie"].ok
    assert len(world.opsgenie.requests) == 3 and by["opsgenie"].why.startswith("HTTP 500 (scripted 500)")
    assert notify_state.open_channels(settings, "k-500") == ["pagerduty", "slack"]
    failed = [r for r in audit_lines(state_dir) if r["result"].startswith("failed")]
    assert [r["target"] for r in failed] == ["opsgenie@dev"] and "after 3 attempts" in failed[0]["result"]
    logged = [json.loads(line) for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines()]
    assert [e["channel"] for e in logged if e.get("event") == "notify.failed"] == ["opsgenie"]
    metrics = (state_dir / "metrics" / "aep_ops_notify_dev.prom").read_text()
    assert 'aep_ops_notifications{channel="opsgenie",env="dev",result="failed"} 1.0' in metrics
    assert 'aep_ops_notifications{channel="pagerduty",env="dev",result="sent"} 1.0' in metrics
    secrets_absent(state_dir, world.token)


def test_a_hanging_receiver_is_cut_by_the_deadline(world, state_dir):
    settings = world.load(timeout_seconds=2, retries=10, deadline_seconds=4)
    world.slack.answer(always=HANG)
    world.pagerduty.answer(always=HANG)
    started = time.monotonic()
    outcomes = dispatch(settings, Notice("trigger", "k-hang", "dev", "anyone there?", "critical"))
    took = time.monotonic() - started
    by = {o.channel: o for o in outcomes}
    assert by["opsgenie"].ok and not by["slack"].ok and not by["pagerduty"].ok
    assert "no answer within" in by["slack"].why and "no answer within" in by["pagerduty"].why
    assert 2 <= len(world.slack.requests) <= 3, "2 s per attempt within a 4 s deadline"
    assert took < 4 + 3, f"channels side by side, each within its deadline: took {took:.1f} s"
    secrets_absent(state_dir, world.token)


def test_a_failed_run_pages_and_its_next_success_resolves_the_same_key(world, state_dir):
    settings = world.load(timeout_seconds=2, retries=0, on_failure=["demo.greet"])
    assert after_run(settings, "demo.greet", "r-ok-0", "succeeded", None) == [], "nothing open: nothing sent"
    assert after_run(settings, "test.multiline", "r-x", "failed", "boom") == [], "not named: nothing sent"
    assert after_run(settings, "demo.greet", "r-ref", "refused", "bad flag") == []
    assert after_run(settings, "demo.greet", "r-int", "interrupted", "SIGTERM") == [], "someone stopped it"
    assert all(rx.requests == [] for rx in world.all())

    sent = after_run(settings, "demo.greet", "r-1", "failed", f"step x: cannot log in with {ROUTING_KEY}\nmore")
    assert [o.ok for o in sent] == [True] * 3
    pd, og, sl = (rx.requests[-1].body for rx in world.all())
    assert pd["dedup_key"] == og["alias"] == "aep-ops/dev/demo.greet" and pd["event_action"] == "trigger"
    assert pd["payload"]["summary"] == "demo.greet failed on dev (run r-1): step x: cannot log in with ****"
    assert pd["payload"]["custom_details"]["next"] == "inv runs.show r-1"
    assert "inv runs.show r-1" in sl["text"] and ROUTING_KEY not in json.dumps([pd["payload"], og, sl])

    resolved = after_run(settings, "demo.greet", "r-2", "succeeded", None)
    assert [o.ok for o in resolved] == [True] * 3
    pd, og, sl = (rx.requests[-1] for rx in world.all())
    assert pd.body == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "aep-ops/dev/demo.greet"}
    assert og.path == "/v2/alerts/aep-ops/dev/demo.greet/close?identifierType=alias"
    assert sl.body["text"].startswith(":white_check_mark: [aep-ops dev] resolved: demo.greet succeeded")
    assert after_run(settings, "demo.greet", "r-3", "succeeded", None) == [], "resolved once, not again"
    assert [len(rx.requests) for rx in world.all()] == [2, 2, 2]
    secrets_absent(state_dir, world.token)


def test_a_resolve_that_fails_stays_open_for_the_next_success(world, state_dir):
    settings = world.load(timeout_seconds=2, retries=0, on_failure=["demo.greet"])
    after_run(settings, "demo.greet", "r-1", "failed", "boom")
    world.pagerduty.answer(500)
    after_run(settings, "demo.greet", "r-2", "succeeded", None)
    assert notify_state.open_channels(settings, "aep-ops/dev/demo.greet") == ["pagerduty"]
    after_run(settings, "demo.greet", "r-3", "succeeded", None)
    assert notify_state.open_channels(settings, "aep-ops/dev/demo.greet") == []
    assert [len(rx.requests) for rx in world.all()] == [3, 2, 2], "only PagerDuty is resolved again"
