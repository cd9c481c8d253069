"""release.bluegreen as an on-call engineer runs it: real app processes behind a real nginx that
routes as the moto ALB listener says, under steady load. What a person checks: no request failed
across the switch, the new colour answers afterwards, the old one is kept warm, a second run
changes nothing, production needs --yes, and a run killed during the drain resumes."""

import json
import time

from aep_ops.testing.load import LoadDriver
from tests.support.processes import spawned, wait_applying
from tests.support.release_env import (ENV, argv, audit_records, deregistration_delay, lease, listener_stickiness,
                                       listener_weights, write_release_config)

BLUE, GREEN = {"blue": 100, "green": 0}, {"blue": 0, "green": 100}


def setup(tmp_path, monkeypatch, moto_account, alb, **release):
    moto_account.use_in(monkeypatch)
    path = write_release_config(tmp_path / "aep-ops.yaml", alb, moto_account.aws_yaml, **release)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(path))


def test_switch_under_load_fails_no_request_and_keeps_blue_warm(cli, tmp_path, monkeypatch, moto_account,
                                                                 release_alb, state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb, health_endpoint="/healthz")
    deregistration_delay(release_alb, 1)
    with LoadDriver(release_alb.url, threads=4, rate=100) as load:
        load.wait_count(50)
        switched = json.loads(cli("release.bluegreen", "--env", ENV, "--to", "green", "--json", tool="aep-ops",
                                  check_rc=0).stdout)
        release_alb.data_path.wait_applied(release_alb.weights(0, 100))
        after = time.monotonic()
        load.wait_count(100, since=after)
    assert load.failures() == [], f"{len(load.failures())} of {load.count()} requests failed: {load.failures()[:5]}"
    assert set(load.by_colour(since=after)) == {"green"}, load.by_colour(since=after)
    assert listener_weights(release_alb) == GREEN
    assert switched["outputs"]["drain_old"]["quiet"] == "blue served no request in 2 s", switched["outputs"]
    assert release_alb.apps["blue"].counts().get(200, 0) > 0, "blue served before the switch"
    assert [t["TargetHealth"]["State"] for t in release_alb.elbv2.describe_target_health(
        TargetGroupArn=release_alb.arns["blue"])["TargetHealthDescriptions"]] == ["healthy"], "blue stays registered"
    assert lease(state_dir)["back_to"] == "blue" and lease(state_dir)["state"] == "done"
    shifts = audit_records(state_dir, "release.bluegreen:shift")
    assert shifts and shifts[0]["args"]["to"] == "blue 0% / green 100%"

    again = cli("release.bluegreen", "--env", ENV, "--to", "green", tool="aep-ops", check_rc=0)
    assert "all traffic is already on green" in again.stdout
    assert len(audit_records(state_dir, "release.bluegreen:shift")) == len(shifts), "the second run changed nothing"


def test_production_switch_needs_yes(cli, tmp_path, monkeypatch, moto_account, release_alb):
    setup(tmp_path, monkeypatch, moto_account, release_alb, production=True)
    refused = cli("release.bluegreen", "--env", ENV, "--to", "green", tool="aep-ops", check_rc=4)
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr
    assert listener_weights(release_alb) == BLUE
    deregistration_delay(release_alb, 0)
    cli("release.bluegreen", "--env", ENV, "--to", "green", "--yes", tool="aep-ops", check_rc=0)
    assert listener_weights(release_alb) == GREEN


def test_unhealthy_new_colour_is_not_switched_to(cli, tmp_path, monkeypatch, moto_account, release_alb):
    setup(tmp_path, monkeypatch, moto_account, release_alb, health_endpoint="/healthz", health_timeout=1)
    release_alb.apps["green"].set_healthy(False)
    failed = cli("release.bluegreen", "--env", ENV, "--to", "green", tool="aep-ops", check_rc=1)
    assert "green" in failed.stderr and "/healthz" in failed.stderr and "Traceback" not in failed.stderr
    assert listener_weights(release_alb) == BLUE


def test_killed_during_the_drain_resumes_and_restores_stickiness(cli, tmp_path, monkeypatch, moto_account,
                                                                  release_alb, state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    deregistration_delay(release_alb, 6)
    release_alb.elbv2.modify_listener(ListenerArn=release_alb.arns["listener"], DefaultActions=[{
        "Type": "forward", "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": release_alb.arns["blue"], "Weight": 100},
                             {"TargetGroupArn": release_alb.arns["green"], "Weight": 0}],
            "TargetGroupStickinessConfig": {"Enabled": True, "DurationSeconds": 3600}}}])
    with spawned(argv("release.bluegreen", "--to", "green"), log=tmp_path / "run.log") as proc:
        run_id = wait_applying(state_dir, "drain_old", proc=proc)
        assert listener_weights(release_alb) == GREEN
        assert listener_stickiness(release_alb) == 60, "stickiness is capped while traffic shifts"
        proc.kill()
        proc.wait(timeout=10)
    started = time.monotonic()
    resumed = cli("release.bluegreen", "--env", ENV, "--resume", run_id, tool="aep-ops", check_rc=0)
    assert time.monotonic() - started < 6 + 5, "the resumed drain waits only what was left of the delay"
    assert "done in an earlier attempt" in resumed.stdout  # the switch is not redone
    assert listener_weights(release_alb) == GREEN
    assert listener_stickiness(release_alb) == 3600, "the original stickiness is back after the drain"


def test_bad_input_is_one_line_and_changes_nothing(cli, tmp_path, monkeypatch, moto_account, release_alb):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    for args, words in ((("--to", "purple"), "--to 'purple': expected blue or green"),
                        (("--to", " "), "expected blue or green"),
                        ((), "expected blue or green")):
        bad = cli("release.bluegreen", "--env", ENV, *args, tool="aep-ops", check_rc=2)
        assert words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    monkeypatch.setenv("AEP_OPS_CONFIG", str(write_release_config(tmp_path / "bad.yaml", release_alb,
                                                                  moto_account.aws_yaml, listener_arn="")))
    missing = cli("release.bluegreen", "--env", ENV, "--to", "green", tool="aep-ops", check_rc=2)
    assert "release.listener_arn is not set" in missing.stderr and "Traceback" not in missing.stderr
    assert listener_weights(release_alb) == BLUE
