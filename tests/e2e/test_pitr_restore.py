"""pitr.restore through the CLI: exact point in time (inserts, and the UPDATE and mistaken DELETE
after it that the restore undoes), refusals before anything is touched, idempotence, kill and resume."""

from __future__ import annotations

import json
import signal
from datetime import timedelta, timezone

import psycopg
import pytest

from aep_ops import config
from aep_ops.db import locations
from tests.support.pitr_source import (earliest_target, labels, server_now, target_between, wait_archived_now,
                                       wait_server_clock_past)
from tests.support.processes import assert_killed_mid_step, pgrep
from tests.support.restore_freeze import restore_held_mid_write, thaw

MISTAKES = ("update drill_markers set label = 'early-2-edited' where label = 'early-2'",
            "delete from drill_markers where label = 'doomed'")


def test_restore_is_exact_and_idempotent(cli, source):
    """After the target: new rows, an UPDATE and a mistaken DELETE of rows older than it. The copy
    holds the rows as they were at the target: the deleted one back, the updated one unchanged."""
    target, kept = target_between(source, ["early-1", "early-2", "doomed"], ["late-1", "late-2"], then=MISTAKES)
    assert {"early-2-edited"} <= labels(source.dsn()) and not {"doomed", "early-2"} & labels(source.dsn())
    target_text = target.astimezone(timezone.utc).isoformat()

    first = cli("pitr.restore", "--target-time", target_text, "--name", "exact", "--json", timeout=300)
    assert first.returncode == 0, first.stderr[-1500:]
    result = json.loads(first.stdout)
    assert [s["status"] for s in result["steps"]] == ["unchanged", "changed", "unchanged"]
    with psycopg.connect(result["dsn"]) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
        assert conn.execute("show archive_mode").fetchone()[0] == "off"
    restored = labels(result["dsn"])
    assert restored == kept and {"early-1", "early-2", "doomed"} <= restored
    assert not {"late-1", "late-2", "early-2-edited"} & restored

    again = json.loads(cli("pitr.restore", "--target-time", target_text, "--name", "exact", "--json",
                           check_rc=0, timeout=300).stdout)
    assert [s["status"] for s in again["steps"]] == ["unchanged"] * 3
    assert again["dsn"] == result["dsn"]

    other_target = target + timedelta(microseconds=1)  # valid too (still before the archive's end), and different
    other = cli("pitr.restore", "--target-time", other_target.isoformat(), "--name", "exact")
    assert other.returncode == 2 and "already exists for another target" in other.stderr


def test_restore_killed_while_pgbackrest_writes_resumes_to_the_exact_copy(cli, source, local_env):
    """kill -9 of aep-ops while `pgbackrest restore` writes into the copy. pgBackRest is frozen
    (SIGSTOP) just before the kill, so the kill provably lands mid-restore, and the journal shows the
    run died inside ensure_restored. (Once aep-ops is gone its orphaned pgBackRest dies: here of the
    SIGHUP the kernel sends a stopped orphaned process group; unfrozen, of SIGPIPE at its next console
    line.) The resume clears the partial copy and any writer left, restores again and ends exact."""
    target, kept = target_between(source, ["before"], ["after"])
    with restore_held_mid_write(local_env, target, "killed") as held:
        held.proc.send_signal(signal.SIGKILL)
        held.proc.wait(timeout=10)
        run_id, datadir, writing = held.run_id, held.datadir, held.writing
        assert_killed_mid_step(local_env, run_id, "ensure_restored")
        thaw(held.frozen)
        copy = locations.restored_copy(config.load("local"), "killed")
        assert copy is not None and copy.meta["status"] == "restoring", "the copy is marked as unfinished"
        assert any(datadir.iterdir()), "the kill left a partial copy behind"

        resumed = cli("pitr.restore", "--resume", run_id, "--json", timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        result = json.loads(resumed.stdout)
        assert result["run_id"] == run_id
        steps = {s["step_id"]: (s["status"], s["earlier"]) for s in result["steps"]}
        assert steps["ensure_restored"] == ("changed", False), steps
        with psycopg.connect(result["dsn"]) as conn:
            assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
        restored = labels(result["dsn"])
        assert restored == kept and "before" in restored and "after" not in restored
        assert pgrep(writing) == "", "no pgBackRest restore left running"
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


@pytest.fixture
def unswitched_source(cli, local_env, monkeypatch):
    """A source whose archive_timeout (a day) never closes a segment during the test: WAL written
    now stays out of the archive until someone runs pg_switch_wal()."""
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT", "86400")
    cli("db.setup", check_rc=0, timeout=300)
    return locations.local_db(config.load("local"))


def test_target_after_the_archive_says_how_far_behind(cli, unswitched_source, local_env):
    """A commit not yet archived cannot be a target; after the switch the message asks for, it can."""
    with psycopg.connect(unswitched_source.dsn(), autocommit=True) as conn:
        wait_server_clock_past(conn, earliest_target(unswitched_source, conn))  # no other refusal applies
        conn.execute("insert into drill_markers (label) values ('not-archived-yet')")
        target = server_now(conn)
    proc = cli("pitr.restore", "--target-time", target.isoformat())
    assert proc.returncode == 2, proc.stderr
    assert "after the last archived WAL" in proc.stderr and "behind the target" in proc.stderr
    assert "pg_switch_wal()" in proc.stderr
    assert not (local_env / "pg" / "restores").exists(), "nothing was restored"

    with psycopg.connect(unswitched_source.dsn(), autocommit=True) as conn:
        wait_archived_now(conn)
    planned = cli("pitr.restore", "--target-time", target.isoformat(), "--dry-run", timeout=120)
    assert planned.returncode == 0, planned.stderr[-1500:]
    assert "restorable from" in planned.stdout


def test_unknown_environment_is_exit_2(cli, local_env):
    proc = cli("pitr.restore", "--env", "qa", "--target-time", "2026-11-26T09:41:00Z")
    assert proc.returncode == 2 and "unknown environment 'qa'" in proc.stderr
