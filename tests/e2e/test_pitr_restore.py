"""pitr.restore through the CLI: exact point in time, refusals before anything is touched,
idempotence, kill and resume."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from tests.support.pitr_source import target_between


def test_restore_is_exact_and_idempotent(cli, source):
    target, kept = target_between(source, ["early-1", "early-2"], ["late-1", "late-2"])
    target_text = target.astimezone(timezone.utc).isoformat()

    first = cli("pitr.restore", "--target-time", target_text, "--name", "exact", "--json", timeout=300)
    assert first.returncode == 0, first.stderr[-1500:]
    result = json.loads(first.stdout)
    assert [s["status"] for s in result["steps"]] == ["unchanged", "changed", "unchanged"]
    with psycopg.connect(result["dsn"]) as conn:
        restored = {r[0] for r in conn.execute("select label from drill_markers")}
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
        assert conn.execute("show archive_mode").fetchone()[0] == "off"
    assert restored == kept and {"early-1", "early-2"} <= restored and not {"late-1", "late-2"} & restored

    again = json.loads(cli("pitr.restore", "--target-time", target_text, "--name", "exact", "--json",
                           check_rc=0, timeout=300).stdout)
    assert [s["status"] for s in again["steps"]] == ["unchanged"] * 3
    assert again["dsn"] == result["dsn"]

    other = cli("pitr.restore", "--target-time", (target - timedelta(seconds=0.1)).isoformat(), "--name", "exact")
    assert other.returncode == 2 and "already exists for another target" in other.stderr


def test_restore_killed_while_pgbackrest_writes_resumes_to_the_exact_copy(cli, source, local_env):
    """kill -9 of aep-ops during `pgbackrest restore`: the restore goes on writing into the copy.
    The resume stops it, starts the copy again from scratch, and ends with the exact rows."""
    import os
    import signal
    import subprocess

    from tests.conftest import BIN, REPO
    from tests.support.processes import latest_run_id, pgrep, wait_for_process

    target, kept = target_between(source, ["before"], ["after"])
    datadir = local_env / "pg" / "restores" / "killed" / "data"
    proc = subprocess.Popen([str(BIN / "inv"), "pitr.restore", "--target-time", target.isoformat(), "--name", "killed"],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_for_process(f"--pg1-path={datadir}", 60), "pgbackrest restore never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    run_id = latest_run_id(local_env, "pitr.restore")

    resumed = cli("pitr.restore", "--resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id
    with psycopg.connect(result["dsn"]) as conn:
        labels = {r[0] for r in conn.execute("select label from drill_markers")}
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
    assert labels == kept and "before" in labels and "after" not in labels
    assert pgrep(f"--pg1-path={datadir}") == "", "no pgBackRest restore left running"
    assert len(pgrep(f"postgres -D {datadir}").split()) == 1, "one server for the copy"


@pytest.mark.parametrize("target, message", [
    ("yesterday at noon", "is not an ISO 8601 time"),
    ("2026-11-26T09:41:00", "has no UTC offset"),
    ("2999-01-01T00:00:00Z", "is in the future"),
    ("2001-01-01T00:00:00Z", "before the earliest recoverable point"),
])
def test_bad_targets_are_refused_with_exit_2_and_nothing_changes(cli, source, local_env, target, message):
    proc = cli("pitr.restore", "--target-time", target)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0]
    restores = local_env / "pg" / "restores"  # (an earlier discard's copy may still be being deleted)
    assert not restores.exists() or not [p for p in restores.iterdir() if not p.name.startswith(".removing-")]


def test_target_after_the_archive_says_how_far_behind(cli, source):
    time.sleep(2)  # past the backup's end and its last archived segment
    soon = (datetime.now(timezone.utc) - timedelta(seconds=0.5)).isoformat()
    proc = cli("pitr.restore", "--target-time", soon)
    assert proc.returncode == 2
    assert "after the last archived WAL" in proc.stderr and "behind the target" in proc.stderr


def test_unknown_environment_is_exit_2(cli, local_env):
    proc = cli("pitr.restore", "--env", "qa", "--target-time", "2026-11-26T09:41:00Z")
    assert proc.returncode == 2 and "unknown environment 'qa'" in proc.stderr
