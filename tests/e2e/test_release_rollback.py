"""release.rollback: back to where the last release came from in one verified change, under load
with no failed request; with nothing recorded it asks where to (exit 2); it takes the traffic back
from a canary that was killed half-way, which then cannot resume."""

import time

from aep_ops.testing.load import LoadDriver
from tests.support.processes import spawned
from tests.support.release_env import (ENV, argv, audit_records, deregistration_delay, lease, listener_weights,
                                       wait_weights, write_release_config)

BLUE, GREEN = {"blue": 100, "green": 0}, {"blue": 0, "green": 100}


def setup(tmp_path, monkeypatch, moto_account, alb, **release):
    moto_account.use_in(monkeypatch)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(write_release_config(tmp_path / "aep-ops.yaml", alb,
                                                                  moto_account.aws_yaml, **release)))


def test_nothing_recorded_asks_where_to(cli, tmp_path, monkeypatch, moto_account, release_alb, state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    asked = cli("release.rollback", "--env", ENV, tool="aep-ops", check_rc=2)
    assert "--to blue|green" in asked.stderr and "Traceback" not in asked.stderr
    already = cli("release.rollback", "--env", ENV, "--to", "blue", tool="aep-ops", check_rc=0)
    assert "all traffic is already on blue" in already.stdout
    assert audit_records(state_dir, "release.rollback:shift") == []


def test_rollback_after_a_switch_is_one_verified_change_under_load(cli, tmp_path, monkeypatch, moto_account,
                                                                    release_alb, state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    deregistration_delay(release_alb, 0)
    with LoadDriver(release_alb.url, threads=4, rate=100) as load:
        load.wait_count(30)
        cli("release.bluegreen", "--env", ENV, "--to", "green", tool="aep-ops", check_rc=0)
        cli("release.rollback", "--env", ENV, tool="aep-ops", check_rc=0)
        release_alb.data_path.wait_applied(release_alb.weights(100, 0))
        after = time.monotonic()
        load.wait_count(30, since=after)
    assert load.failures() == []
    assert set(load.by_colour(since=after)) == {"blue"}
    assert listener_weights(release_alb) == BLUE
    assert [r["args"]["to"] for r in audit_records(state_dir, "release.rollback:shift")] == ["blue 100% / green 0%"]
    again = cli("release.rollback", "--env", ENV, tool="aep-ops", check_rc=0)
    assert "all traffic is already on blue" in again.stdout


def test_rollback_takes_traffic_back_from_a_killed_canary(cli, tmp_path, monkeypatch, moto_account, release_alb,
                                                          state_dir):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    with spawned(argv("release.canary", "--steps", "50,100", "--step-wait", "120s"), log=tmp_path / "c.log") as proc:
        wait_weights(release_alb, {"blue": 50, "green": 50}, proc=proc)
        proc.kill()
        proc.wait(timeout=10)
    run_id = lease(state_dir)["run_id"]
    rolled = cli("release.rollback", "--env", ENV, tool="aep-ops", check_rc=0)
    assert f"release.canary run {run_id}" in rolled.stdout
    assert listener_weights(release_alb) == BLUE and lease(state_dir)["state"] == "rolled_back"
    refused = cli("release.canary", "--env", ENV, "--resume", run_id, tool="aep-ops", check_rc=1)
    assert "rolled back" in refused.stdout + refused.stderr
    assert listener_weights(release_alb) == BLUE


def test_bad_input(cli, tmp_path, monkeypatch, moto_account, release_alb):
    setup(tmp_path, monkeypatch, moto_account, release_alb)
    bad = cli("release.rollback", "--env", ENV, "--to", "red", tool="aep-ops", check_rc=2)
    assert "--to 'red': expected blue or green" in bad.stderr and "Traceback" not in bad.stderr
