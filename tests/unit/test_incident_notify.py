"""incident.notify's pure parts: the bounded retry policy (attempts, backoff, Retry-After, one
deadline), the payload of each channel, the configuration (an empty on_failure pages for none),
the open-pages file and the notification counts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aep_ops.incident import notify_http, notify_opsgenie, notify_pagerduty, notify_slack, notify_state
from aep_ops.incident.notify import Notice, NotifyConfig, dedup_key, first_line
from aep_ops.incident.notify_http import Answer, Policy, deliver
from aep_ops.metrics import catalogue, notifications, textfile


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def scripted(clock, *answers, cost=0.0):
    """An attempt that answers in turn (an Answer, or an exception to raise), each taking ``cost`` s."""
    todo, calls = list(answers), []

    def attempt(timeout):
        calls.append(timeout)
        clock.now += min(cost, timeout)
        answer = todo.pop(0) if todo else Answer(202)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return attempt, calls


def test_a_2xx_first_time_is_one_attempt():
    clock = FakeClock()
    attempt, calls = scripted(clock, Answer(202))
    got = deliver(attempt, Policy(), sleep=clock.sleep, clock=clock.clock)
    assert (got.ok, got.attempts, got.why, clock.slept) == (True, 1, "HTTP 202", [])


def test_429_is_retried_after_its_retry_after_capped():
    clock = FakeClock()
    attempt, calls = scripted(clock, Answer(429, "1"), Answer(429, "3600"), Answer(200))
    got = deliver(attempt, Policy(retries=3, deadline=60), sleep=clock.sleep, clock=clock.clock)
    assert got.ok and got.attempts == 3
    assert clock.slept == [1.0, notify_http.RETRY_AFTER_CAP]


def test_500_forever_gives_up_after_the_attempts():
    clock = FakeClock()
    attempt, calls = scripted(clock, *[Answer(500, text="boom")] * 10)
    got = deliver(attempt, Policy(retries=2, deadline=60), sleep=clock.sleep, clock=clock.clock)
    assert not got.ok and got.attempts == 3 and len(calls) == 3
    assert got.why == "HTTP 500 (boom) after 3 attempts"
    assert all(0.5 * min(notify_http.BACKOFF_CAP, 0.5 * 2 ** i) <= s <= min(notify_http.BACKOFF_CAP, 0.5 * 2 ** i)
               for i, s in enumerate(clock.slept))


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_a_client_error_is_not_retried(status):
    clock = FakeClock()
    attempt, calls = scripted(clock, Answer(status, text="Invalid routing key"))
    got = deliver(attempt, Policy(retries=5), sleep=clock.sleep, clock=clock.clock)
    assert not got.ok and len(calls) == 1 and got.why == f"HTTP {status} (Invalid routing key) after 1 attempt"


def test_a_hang_is_cut_by_the_deadline_not_timeout_times_attempts():
    clock = FakeClock()
    attempt, calls = scripted(clock, *[TimeoutError("timed out")] * 10, cost=5.0)
    got = deliver(attempt, Policy(timeout=5, retries=10, deadline=12), sleep=clock.sleep, clock=clock.clock)
    assert not got.ok and clock.now <= 12.0
    assert calls[0] == 5 and calls[-1] < 5, "the last attempt only gets what is left of the deadline"
    assert "no answer within" in got.why and "deadline of 12 s reached" in got.why


def test_connection_refused_is_retried_and_a_bug_is_not():
    clock = FakeClock()
    attempt, calls = scripted(clock, ConnectionRefusedError(111, "Connection refused"), Answer(202))
    assert deliver(attempt, Policy(), sleep=clock.sleep, clock=clock.clock).attempts == 2
    attempt, calls = scripted(clock, ValueError("the endpoint must be http:// or https://, not file:"))
    got = deliver(attempt, Policy(), sleep=clock.sleep, clock=clock.clock)
    assert not got.ok and len(calls) == 1 and "http://" in got.why


def notice(action="trigger", **kw):
    return Notice(action, "aep-ops/prod/dr.drill", "prod", kw.pop("summary", "dr.drill failed on prod (run r1): x"),
                  "critical", "dr.drill", "r1", "inv runs.show r1", "runbook failure", source="ops-1",
                  details={"run_id": "r1", "n": 3}, **kw)


def test_pagerduty_events():
    trigger = notify_pagerduty.body(notice(summary="s" * 2000), "R" * 32)
    assert trigger["routing_key"] == "R" * 32 and trigger["event_action"] == "trigger"
    assert trigger["dedup_key"] == "aep-ops/prod/dr.drill"
    payload = trigger["payload"]
    assert len(payload["summary"]) == 1024 and payload["severity"] == "critical" and payload["source"] == "ops-1"
    assert payload["component"] == "dr.drill" and payload["custom_details"] == {"run_id": "r1", "n": 3}
    for action in ("acknowledge", "resolve"):
        assert notify_pagerduty.body(notice(action), "R" * 32) == {
            "routing_key": "R" * 32, "event_action": action, "dedup_key": "aep-ops/prod/dr.drill"}


def test_opsgenie_requests():
    url, body = notify_opsgenie.request(notice(summary="m" * 200 + "\nsecond line"), {"url": "http://og/v2/alerts/"})
    assert url == "http://og/v2/alerts" and body["alias"] == "aep-ops/prod/dr.drill"
    assert len(body["message"]) == 130 and body["priority"] == "P1" and body["details"] == {"run_id": "r1", "n": "3"}
    assert notify_opsgenie.request(notice(), {"priority": "P3"})[1]["priority"] == "P3"
    url, body = notify_opsgenie.request(notice("resolve"), {})
    assert url == "https://api.opsgenie.com/v2/alerts/aep-ops%2Fprod%2Fdr.drill/close?identifierType=alias"
    url, _ = notify_opsgenie.request(notice("acknowledge"), {})
    assert url.endswith("/aep-ops%2Fprod%2Fdr.drill/acknowledge?identifierType=alias")


def test_slack_text():
    assert notify_slack.text(notice()) == (":rotating_light: [aep-ops prod] PAGE: dr.drill failed on prod (run r1): x"
                                           " (key `aep-ops/prod/dr.drill`) - `inv runs.show r1`")
    assert notify_slack.text(notice("resolve", summary="")).startswith(":white_check_mark: [aep-ops prod] resolved:")


def settings(tmp_path, notify=None, env="prod"):
    return SimpleNamespace(env={"notify": notify} if notify is not None else {}, env_name=env,
                           state_dir=tmp_path, get=lambda key: None)


@pytest.mark.parametrize("on_failure, pages", [
    (None, False), ([], False), ([""], False), (["  "], False), (["backup.run"], False),
    (["dr.drill"], True), (["all"], True)])
def test_only_named_runbooks_or_the_word_all_page(tmp_path, on_failure, pages):
    cfg = NotifyConfig.from_settings(settings(tmp_path, {"slack": {"webhook": "env:X"}, "on_failure": on_failure}))
    assert cfg.pages_on_failure("dr.drill") is pages


def test_config_defaults_and_channels(tmp_path):
    cfg = NotifyConfig.from_settings(settings(tmp_path, {"pagerduty": {"routing_key": "env:PD", "severity": "warning"},
                                                          "opsgenie": {"priority": "P1"}, "retries": 0}))
    assert cfg.channels == ["pagerduty"], "a channel without its secret is not configured"
    assert (cfg.timeout, cfg.retries, cfg.deadline, cfg.severity()) == (5.0, 0, 15.0, "warning")
    assert not NotifyConfig.from_settings(settings(tmp_path)).pages_on_failure("dr.drill")


def test_keys_and_first_lines():
    assert dedup_key("prod", "dr.drill") == "aep-ops/prod/dr.drill"
    assert first_line("\n  step x: boom  \nDETAIL: more") == "step x: boom"
    assert first_line(None) == ""


def test_open_pages_close_per_channel(tmp_path):
    s = settings(tmp_path)
    assert notify_state.open_channels(s, "k") == []
    notify_state.opened(s, "k", ["pagerduty", "slack"], run_id="r1")
    notify_state.opened(s, "k", ["opsgenie"], run_id="r2")
    assert notify_state.open_channels(s, "k") == ["opsgenie", "pagerduty", "slack"]
    notify_state.closed(s, "k", ["pagerduty", "slack"])
    assert notify_state.open_channels(s, "k") == ["opsgenie"]
    notify_state.closed(s, "k", ["opsgenie"])
    assert notify_state.load(s) == {}
    notify_state.state_file(s).write_text("{not json")
    assert notify_state.open_channels(s, "k") == []


def test_counts_grow_across_writes(tmp_path):
    s = settings(tmp_path)
    notifications.record(s, [("pagerduty", True), ("slack", False)], now=100.0)
    notifications.record(s, [("pagerduty", True), ("slack", False)], now=200.0)
    got = {(x.name, tuple(sorted(x.labels.items()))): x.value
           for x in textfile.read(textfile.area_file(s, "notify"))}
    count = "aep_ops_notifications"
    assert got[(count, (("channel", "pagerduty"), ("env", "prod"), ("result", "sent")))] == 2
    assert got[(count, (("channel", "pagerduty"), ("env", "prod"), ("result", "failed")))] == 0
    assert got[(count, (("channel", "slack"), ("env", "prod"), ("result", "failed")))] == 2
    assert got[("aep_ops_notification_last_failure_timestamp_seconds", (("channel", "slack"), ("env", "prod")))] == 200


def test_the_notify_families_are_in_the_catalogue():
    for name in ("aep_ops_notifications", "aep_ops_notification_last_failure_timestamp_seconds"):
        assert catalogue.family(name) is catalogue.FAMILIES[name] and "env" in catalogue.FAMILIES[name].labels


def test_the_run_hook_never_raises_and_is_idle_without_on_failure(tmp_path):
    from aep_ops.incident import run_hooks

    class Broken:
        env = {"notify": {"on_failure": ["demo.greet"], "slack": {"webhook": "env:X"}}}
        env_name = "prod"

        @property
        def state_dir(self):
            raise RuntimeError("no state dir")

        def secret(self, ref):
            raise RuntimeError("no secrets either")

    event = SimpleNamespace(settings=Broken(), runbook=SimpleNamespace(id="demo.greet"), run_id="r",
                            status="failed", error="boom")
    assert run_hooks.run_finished(event) is None
    event.settings = settings(tmp_path, {"slack": {"webhook": "env:X"}, "on_failure": []})
    assert run_hooks.run_finished(event) is None and not (tmp_path / "notify").exists()
