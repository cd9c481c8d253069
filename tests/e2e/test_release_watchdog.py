"""release.watchdog: a canary killed half-way leaves traffic split; once its lease expires the
watchdog (two of them at once) returns all traffic to the stable
colour exactly once, and the killed canary can no longer be resumed."""

import subprocess
import time
from datetime import datetime

from tests.support.processes import spawned
from tests.support.release_env import (ENV, argv, audit_records, lease, listener_weights, wait_weights,
                                       write_release_config)

SPLIT = {"blue": 50, "green": 50}


def test_expired_canary_is_rolled_back_once_and_cannot_resume(cli, tmp_path, monkeypatch, moto_account, release_alb,
                                                               state_dir):
    moto_account.use_in(monkeypatch)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(write_release_config(tmp_path / "aep-ops.yaml", release_alb,
                                                                  moto_account.aws_yaml, lease_seconds=10)))
    with spawned(argv("release.canary", "--steps", "50,100", "--step-wait", "120s"), log=tmp_path / "c.log") as proc:
        wait_weights(release_alb, SPLIT, proc=proc)
        proc.kill()
        proc.wait(timeout=10)
    held = lease(state_dir)
    assert held["state"] == "active"

    alive = cli("release.watchdog", "--env", ENV, tool="aep-ops", check_rc=0)
    assert "is alive (lease until" in alive.stdout, alive.stdout
    assert listener_weights(release_alb) == SPLIT, "a lease that has not expired is left alone"

    expires = datetime.fromisoformat(held["expires_at"]).timestamp()
    time.sleep(max(0.0, expires - time.time() + 0.2))
    watchdogs = [subprocess.Popen(argv("release.watchdog"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [w.communicate(timeout=60) for w in watchdogs]
    # On one host the second may find the first holding release.watchdog@rel (exit 3); on two ops hosts
    # sharing a PostgreSQL journal the lease alone decides (test_release_watchdog_lease.py).
    assert sorted(w.returncode for w in watchdogs) in ([0, 0], [0, 3]), outputs
    assert listener_weights(release_alb) == {"blue": 100, "green": 0}
    shifts = audit_records(state_dir, "release.watchdog:shift")
    assert len(shifts) == 1, f"exactly one watchdog moved the traffic: {shifts}"
    assert lease(state_dir)["state"] == "rolled_back" and "lease expired" in lease(state_dir)["note"]

    refused = cli("release.canary", "--env", ENV, "--resume", held["run_id"], tool="aep-ops", check_rc=1)
    assert "rolled back" in refused.stdout + refused.stderr and "Start a new canary" in refused.stdout + refused.stderr
    assert listener_weights(release_alb) == {"blue": 100, "green": 0}
