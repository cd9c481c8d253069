"""incident.notify as a person runs it, and the automatic page of a failing runbook, through the
real CLI against real HTTP receivers standing in for PagerDuty, OpsGenie and Slack: payloads as
each API wants them, 429 retried, 500 and a hang bounded and reported (exit 1) while the other
channels deliver, bad input refused in one line (exit 2); a failed demo.greet pages with its dedup
key and its next success resolves it, its exit codes unchanged; no secret written anywhere."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import write_config
from tests.support.notify_receivers import HANG, notify_receivers

ROUTING_KEY = "pdRoutingKey-e2e-5c8d1f3a7b9e"
API_KEY = "ogApiKey-e2e-3e7a9c2d5f1b"
ENV = "dev"


@pytest.fixture
def world(tmp_path, monkeypatch, state_dir):
    with notify_receivers() as rx:
        rx.env = {"AEP_TEST_PD_KEY": ROUTING_KEY, "AEP_TEST_OG_KEY": API_KEY, "AEP_TEST_SLACK_HOOK": rx.slack.url,
                  "AEP_OPS_PLUGINS": "tests.support.frontdoor_runbooks"}
        rx.token = rx.slack.url.rsplit("/", 1)[1]
        rx.outputs = {}

        def configure(channels=("pagerduty", "opsgenie", "slack"), **notify):
            lines = {"pagerduty": f"pagerduty: {{routing_key: 'env:AEP_TEST_PD_KEY', url: '{rx.pagerduty.url}'}}",
                     "opsgenie": f"opsgenie: {{api_key: 'env:AEP_TEST_OG_KEY', url: '{rx.opsgenie.url}'}}",
                     "slack": "slack: {webhook: 'env:AEP_TEST_SLACK_HOOK'}"}
            notify = {"timeout_seconds": 2, "retries": 2, **notify}
            text = "environments:\n  dev:\n    notify:\n" + "".join(f"      {lines[c]}\n" for c in channels)
            text += "".join(f"      {k}: {json.dumps(v)}\n" for k, v in notify.items())
            write_config(tmp_path / "aep-ops.yaml", text, monkeypatch)

        rx.configure = configure
        yield rx
        leaks = [f"{where}: {value[:8]}..." for where, data in {**rx.outputs, **files(state_dir)}.items()
                 for value in (ROUTING_KEY, API_KEY, rx.token) if value in data]
        assert leaks == [], "a secret was written"


def files(root):
    return {str(p): p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*")) if p.is_file()}


def run(cli, world, *args, rc):
    proc = cli(*args, env=world.env, check_rc=rc)
    world.outputs[f"{' '.join(args)} #{len(world.outputs)}"] = proc.stdout + proc.stderr
    return proc


def notify(cli, world, *args, rc=0):
    proc = run(cli, world, "incident.notify", "--env", ENV, *args, rc=rc)
    assert "Traceback" not in proc.stderr
    return proc


def test_trigger_then_resolve_reach_every_channel(cli, world, state_dir):
    world.configure()
    out = notify(cli, world, "--summary", "API 5xx above 5% since 09:40", "--severity", "error").stdout
    for channel in ("pagerduty", "opsgenie", "slack"):
        assert f"{channel}: sent (trigger, key aep-ops/dev/manual, 1 attempt)" in out, out
    (pd,), (og,), (sl,) = (rx.requests for rx in world.all())
    assert pd.body["routing_key"] == ROUTING_KEY and pd.body["event_action"] == "trigger"
    assert pd.body["dedup_key"] == "aep-ops/dev/manual" and pd.body["payload"]["severity"] == "error"
    assert pd.body["payload"]["summary"] == "API 5xx above 5% since 09:40"
    assert og.headers["Authorization"] == f"GenieKey {API_KEY}" and og.body["alias"] == "aep-ops/dev/manual"
    assert og.body["message"] == "API 5xx above 5% since 09:40" and og.body["priority"] == "P2"
    assert sl.body["text"].startswith(":rotating_light: [aep-ops dev] PAGE: API 5xx above 5% since 09:40")

    notify(cli, world, "--action", "acknowledge", "--channel", "pagerduty,opsgenie")
    out = notify(cli, world, "--action", "resolve", "--summary", "rolled back").stdout
    assert "pagerduty: sent (resolve, key aep-ops/dev/manual" in out
    assert [r.body["event_action"] for r in world.pagerduty.requests] == ["trigger", "acknowledge", "resolve"]
    assert world.pagerduty.requests[2].body == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                                                "dedup_key": "aep-ops/dev/manual"}
    assert [r.path for r in world.opsgenie.requests[1:]] == [
        "/v2/alerts/aep-ops/dev/manual/acknowledge?identifierType=alias",
        "/v2/alerts/aep-ops/dev/manual/close?identifierType=alias"]
    assert len(world.slack.requests) == 2 and "resolved: rolled back" in world.slack.requests[1].body["text"]
    audit = [json.loads(line) for line in (state_dir / "logs" / "audit.jsonl").read_text().splitlines()]
    sent = [(r["action"], r["target"]) for r in audit if r["action"].startswith("incident.notify:")]
    assert ("incident.notify:trigger", "pagerduty@dev") in sent and ("incident.notify:resolve", "slack@dev") in sent


def test_429_twice_then_delivered(cli, world):
    world.configure()
    world.pagerduty.retry_after = "1"
    world.pagerduty.answer(429, 429)
    out = notify(cli, world, "--summary", "rate limited", "--channel", "pagerduty").stdout
    assert "pagerduty: sent (trigger, key aep-ops/dev/manual, 3 attempts)" in out
    assert [r.body["dedup_key"] for r in world.pagerduty.requests] == ["aep-ops/dev/manual"] * 3
    assert world.opsgenie.requests == [] and world.slack.requests == []


def test_500_forever_is_bounded_and_reported_while_the_others_deliver(cli, world, state_dir):
    world.configure()
    world.opsgenie.answer(always=500)
    proc = notify(cli, world, "--summary", "db primary down", rc=1)
    assert "opsgenie: failed: HTTP 500 (scripted 500) after 3 attempts" in proc.stdout
    assert "pagerduty: sent" in proc.stdout and "slack: sent" in proc.stdout
    assert len(world.opsgenie.requests) == 3
    assert "incident.notify: failed at step 2 (run_notify)" in proc.stderr.strip().splitlines()[-1]
    metrics = (state_dir / "metrics" / "aep_ops_notify_dev.prom").read_text()
    assert 'aep_ops_notifications{channel="opsgenie",env="dev",result="failed"} 1.0' in metrics


def test_a_hanging_receiver_is_bounded(cli, world):
    world.configure(timeout_seconds=1, retries=5, deadline_seconds=3)
    world.slack.answer(always=HANG)
    started = time.monotonic()
    proc = notify(cli, world, "--summary", "is anyone there", rc=1)
    took = time.monotonic() - started
    assert "slack: failed: no answer within" in proc.stdout and "pagerduty: sent" in proc.stdout
    assert 2 <= len(world.slack.requests) <= 3
    assert took < 3 + 10, f"a 3 s deadline held the whole command {took:.1f} s (CLI start included)"
    print(f"incident.notify with a hanging Slack receiver (deadline 3 s): {took:.1f} s")


@pytest.mark.parametrize("args, message", [
    (["--action", "page", "--summary", "x"], "--action 'page': expected one of trigger, acknowledge, resolve"),
    (["--severity", "sev1", "--summary", "x"], "--severity 'sev1': expected one of critical, error, warning, info"),
    (["--channel", "pagerduty,teams", "--summary", "x"], "--channel 'pagerduty,teams': expected"),
    (["--summary", "  "], "--summary is empty"),
    (["--channel", "opsgenie", "--summary", "x"], "--channel opsgenie: not configured for dev"),
    (["--key", "", "--summary", "x"], "--key is empty"),
    (["--channel", "", "--summary", "x"], "--channel is empty"),
])
def test_bad_input_is_one_line_and_sends_nothing(cli, world, args, message):
    world.configure(channels=("pagerduty", "slack"))
    proc = notify(cli, world, *args, rc=2)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert all(rx.requests == [] for rx in world.all())


def test_no_channel_configured_is_refused(cli, world, monkeypatch, tmp_path):
    write_config(tmp_path / "aep-ops.yaml", "environments:\n  dev: {}\n", monkeypatch)
    proc = notify(cli, world, "--summary", "x", rc=2)
    assert "no notification channel is configured for dev" in proc.stderr


def test_a_failed_run_pages_and_its_next_success_resolves_it(cli, world, state_dir):
    world.configure(on_failure=["demo.greet"])
    (state_dir / "demo").parent.mkdir(parents=True, exist_ok=True)
    (state_dir / "demo").write_text("not a directory")  # demo.greet's first step fails
    run(cli, world, "test.multiline", "--env", ENV, rc=1)
    assert all(rx.requests == [] for rx in world.all()), "a runbook not named in on_failure sends nothing"
    run(cli, world, "demo.greet", "--env", ENV, rc=1)  # its exit code, paged or not
    (pd,), (og,), (sl,) = (rx.requests for rx in world.all())
    assert pd.body["event_action"] == "trigger" and pd.body["dedup_key"] == og.body["alias"] == "aep-ops/dev/demo.greet"
    run_id = pd.body["payload"]["custom_details"]["run_id"]
    assert pd.body["payload"]["summary"].startswith(f"demo.greet failed on dev (run {run_id}): ")
    assert pd.body["payload"]["severity"] == "critical" and og.body["priority"] == "P1"
    assert f"inv runs.show {run_id}" in sl.body["text"]

    (state_dir / "demo").unlink()
    run(cli, world, "demo.greet", "--env", ENV, rc=0)
    pd, og, sl = (rx.requests[-1] for rx in world.all())
    assert pd.body == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "aep-ops/dev/demo.greet"}
    assert og.path == "/v2/alerts/aep-ops/dev/demo.greet/close?identifierType=alias"
    assert sl.body["text"].startswith(":white_check_mark: [aep-ops dev] resolved: demo.greet succeeded on dev")
    run(cli, world, "demo.greet", "--env", ENV, rc=0)
    assert [len(rx.requests) for rx in world.all()] == [2, 2, 2], "a success with no page open sends nothing"


def test_a_dead_channel_never_changes_the_runs_outcome(cli, world, state_dir):
    world.configure(on_failure=["demo.greet", "test.multiline"], timeout_seconds=1, retries=5, deadline_seconds=3)
    world.pagerduty.answer(always=HANG)
    world.opsgenie.answer(always=500)
    started = time.monotonic()
    proc = run(cli, world, "test.multiline", "--env", ENV, rc=1)
    took = time.monotonic() - started
    assert "test.multiline: failed at step 1 (fail_many_lines)" in proc.stderr.strip().splitlines()[-1]
    assert world.slack.requests and took < 3 + 10, f"took {took:.1f} s"
    run(cli, world, "demo.greet", "--env", ENV, rc=0)  # nothing open for demo.greet: nothing sent, exit 0
    logged = [json.loads(line) for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines()]
    failed = {e["channel"]: e["error"] for e in logged if e.get("event") == "notify.failed"}
    assert set(failed) == {"pagerduty", "opsgenie"} and "HTTP 500" in failed["opsgenie"]
    assert "no answer within" in failed["pagerduty"]
    metrics = (state_dir / "metrics" / "aep_ops_notify_dev.prom").read_text()
    for channel, result in (("pagerduty", "failed"), ("opsgenie", "failed"), ("slack", "sent")):
        assert f'aep_ops_notifications{{channel="{channel}",env="dev",result="{result}"}} 1.0' in metrics
    print(f"test.multiline with a hanging PagerDuty and a 500 OpsGenie (deadline 3 s): {took:.1f} s")
