"""release.canary against real app processes behind a real nginx routed by the moto listener, under
steady load: a healthy canary is promoted step by step; a degraded one is caught by its error rate
during the step and rolled back (measured); too little traffic never passes; alarms gate the start
and every step; a killed canary resumes; and the release lock keeps other release runbooks out."""

import time

from aep_ops.testing.load import LoadDriver
from tests.support.processes import spawned
from tests.support.release_env import (ENV, argv, audit_records, lease, listener_weights, wait_weights,
                                       write_release_config)
from tests.support.webhook_receiver import webhook_receiver

BLUE, GREEN = {"blue": 100, "green": 0}, {"blue": 0, "green": 100}


def setup(tmp_path, monkeypatch, moto_account, alb, **release):
    moto_account.use_in(monkeypatch)
    path = write_release_config(tmp_path / "aep-ops.yaml", alb, moto_account.aws_yaml, **release)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(path))


def alarm(moto_account, name="aep-api-5xx", state="OK"):
    cloudwatch = moto_account.client("cloudwatch")
    cloudwatch.put_metric_alarm(AlarmName=name, Namespace="AEP", MetricName="5xx", Statistic="Sum", Period=1,
                                EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")
    return cloudwatch


def test_healthy_canary_is_promoted_step_by_step_without_a_failed_request(cli, tmp_path, monkeypatch, moto_account,
                                                                         release_alb, state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    with LoadDriver(release_alb.url, threads=4, rate=100) as load:
        load.wait_count(50)
        run = cli("release.canary", "--env", ENV, "--steps", "50,100", "--step-wait", "2s", tool="aep-ops",
                  check_rc=0)
        release_alb.data_path.wait_applied(release_alb.weights(0, 100))
        after = time.monotonic()
        load.wait_count(50, since=after)
    assert load.failures() == [], load.failures()[:5]
    assert set(load.by_colour(since=after)) == {"green"}
    colours = load.by_colour()
    assert colours["blue"] > 0 and colours["green"] > 0
    assert listener_weights(release_alb) == GREEN and lease(state_dir)["state"] == "done"
    shares = [r["args"]["to"] for r in audit_records(state_dir, "release.canary:shift")]
    assert shares == ["blue 50% / green 50%", "blue 0% / green 100%"], shares
    assert "result: succeeded" in run.stdout


def test_degraded_canary_is_caught_during_its_step_and_rolled_back(tmp_path, monkeypatch, moto_account, release_alb,
                                                                   state_dir):
    with webhook_receiver() as slack:
        monkeypatch.setenv("AEP_TEST_RELEASE_WEBHOOK", slack.url)
        setup(tmp_path, monkeypatch, moto_account, release_alb, slack_webhook="env:AEP_TEST_RELEASE_WEBHOOK")
        release_alb.apps["green"].degrade(0.5)
        with LoadDriver(release_alb.url, threads=4, rate=100) as load, \
                spawned(argv("release.canary", "--steps", "25,100", "--step-wait", "60s"),
                        log=tmp_path / "canary.log") as proc:
            wait_weights(release_alb, {"blue": 75, "green": 25}, proc=proc)
            rolled_back = wait_weights(release_alb, BLUE, timeout=60, proc=None)
            assert proc.wait(timeout=30) == 5
            release_alb.data_path.wait_applied(release_alb.weights(100, 0))
            settled = time.monotonic()
            load.wait_count(50, since=settled)
        log = (tmp_path / "canary.log").read_text()
        errors = [s for s in load.samples() if s.status == 500]
        assert errors, "the degraded canary answered some requests with 500"
        detection = rolled_back - errors[0].started
        print(f"\ncanary error rate 50%: first 5xx to listener back on blue {detection:.2f} s "
              f"({len(errors)} failed requests of {load.count()})")
        assert detection < 30, "caught during the step (60 s), not at its end"
        assert set(load.by_colour(since=settled)) == {"blue"}
        assert "error_rate fail at the 25% step" in log and "All traffic is back on blue" in log
        assert lease(state_dir)["state"] == "rolled_back"
        assert any("rolled back" in text and "green" in text for text in slack.texts()), slack.texts()
        assert slack.url not in log, "the webhook URL is a secret"


def test_too_little_traffic_is_inconclusive_and_rolls_back_at_the_deadline(cli, tmp_path, monkeypatch, moto_account,
                                                                          release_alb):
    setup(tmp_path, monkeypatch, moto_account, release_alb, min_requests=1000)
    started = time.monotonic()
    run = cli("release.canary", "--env", ENV, "--steps", "100", "--step-wait", "1s", "--step-deadline", "3s",
              tool="aep-ops", check_rc=5)
    assert time.monotonic() - started >= 3, "held until the step deadline"
    assert "inconclusive" in run.stderr + run.stdout and "fewer than the 1000" in run.stderr + run.stdout
    assert listener_weights(release_alb) == BLUE


def test_an_alarm_already_firing_refuses_the_start_unless_ignored(cli, tmp_path, monkeypatch, moto_account,
                                                                 release_alb, state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb, alarms=["aep-api-5xx"])
    alarm(moto_account, state="ALARM")
    refused = cli("release.canary", "--env", ENV, "--steps", "100", "--step-wait", "1s", tool="aep-ops", check_rc=2)
    assert "aep-api-5xx" in refused.stderr and "--ignore-alarm" in refused.stderr
    assert listener_weights(release_alb) == BLUE
    with LoadDriver(release_alb.url, threads=4, rate=100) as load:
        load.wait_count(20)
        cli("release.canary", "--env", ENV, "--steps", "100", "--step-wait", "1s", "--ignore-alarm", tool="aep-ops",
            check_rc=0)
    assert listener_weights(release_alb) == GREEN
    ignored = audit_records(state_dir, "release.canary:ignore_alarm")
    assert len(ignored) == 1 and ignored[0]["args"]["alarms"] == "aep-api-5xx" and ignored[0]["actor"]


def test_an_alarm_firing_during_a_step_rolls_back(tmp_path, monkeypatch, moto_account, release_alb):
    setup(tmp_path, monkeypatch, moto_account, release_alb, alarms=["aep-api-5xx"])
    cloudwatch = alarm(moto_account)
    with LoadDriver(release_alb.url, threads=2, rate=50), \
            spawned(argv("release.canary", "--steps", "50,100", "--step-wait", "60s"), log=tmp_path / "c.log") as proc:
        wait_weights(release_alb, {"blue": 50, "green": 50}, proc=proc)
        cloudwatch.set_alarm_state(AlarmName="aep-api-5xx", StateValue="ALARM", StateReason="p99 over the bar")
        assert proc.wait(timeout=30) == 5
    assert "alarm(s) in ALARM: aep-api-5xx" in (tmp_path / "c.log").read_text()
    assert listener_weights(release_alb) == BLUE


def test_killed_canary_resumes_where_it_was(cli, tmp_path, monkeypatch, moto_account, release_alb, state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    with LoadDriver(release_alb.url, threads=4, rate=100) as load:
        with spawned(argv("release.canary", "--steps", "50,100", "--step-wait", "8s"), log=tmp_path / "c.log") as proc:
            wait_weights(release_alb, {"blue": 50, "green": 50}, proc=proc)
            locked = cli("release.bluegreen", "--env", ENV, "--to", "green", tool="aep-ops", check_rc=3)
            assert "release@rel is locked" in locked.stderr, locked.stderr
            proc.kill()
            proc.wait(timeout=10)
        run_id = lease(state_dir)["run_id"]
        assert lease(state_dir)["state"] == "active" and listener_weights(release_alb) == {"blue": 50, "green": 50}
        monkeypatch.setenv("AEP_OPS_CONFIG", str(write_release_config(
            tmp_path / "aep-ops.yaml", release_alb, moto_account.aws_yaml)))
        resumed = cli("release.canary", "--env", ENV, "--resume", run_id, tool="aep-ops", check_rc=0, timeout=180)
    assert listener_weights(release_alb) == GREEN and lease(state_dir)["state"] == "done"
    assert load.failures() == []
    assert "result: succeeded" in resumed.stdout
    assert lease(state_dir)["run_id"] == run_id, "the resumed run carried the same lease"
    shares = [r["args"]["to"] for r in audit_records(state_dir, "release.canary:shift")]
    assert shares == ["blue 50% / green 50%", "blue 0% / green 100%"], "each change once, across the kill"
    shown = cli("runs.show", run_id, tool="aep-ops", check_rc=0).stdout
    assert "resumed with the lease; re-running the 50% step" in shown, shown
