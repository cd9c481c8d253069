"""db.terminate through the CLI against the local AEP source (real PostgreSQL 15): by (pid,
backend_start), refusing a reused PID; all sessions idle in transaction longer than N and only
those; production without --yes; resume after the refusal acts only on what is still there; a
second run changes nothing; bad input is exit 2 in one line."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from aep_ops.incident.postgres_rules import iso
from tests.support.pg_conditions import (Sessions, alive, audit_lines, backend_start, local_source, steps_by_id,
                                         wait_state)
from tests.support.processes import latest_run_id

ACTION = "db.terminate:terminate"


@pytest.fixture(scope="module")
def source():
    with local_source() as (env, dsn):
        yield env, dsn


@pytest.fixture
def sessions(source):
    s = Sessions(source[1])
    yield s
    s.close()


def _refused(proc, message: str, code: int = 2) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code and len(lines) == 1, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_terminate_by_pid_and_backend_start_then_again_unchanged(source, sessions, cli):
    env, dsn = source
    victim = sessions.open("victim")
    pid = victim.info.backend_pid
    start = iso(backend_start(dsn, pid))
    before = len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION))
    proc = cli("db.terminate", "--pid", str(pid), "--backend-start", start, "--json", env=env, check_rc=0)
    steps = steps_by_id(proc)
    assert steps["ensure_sessions_terminated"]["status"] == "changed"
    assert not alive(dsn, pid)
    with pytest.raises(psycopg.OperationalError):
        victim.execute("select 1")
    hits = audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)[before:]
    assert [(h["args"]["pid"], h["args"]["backend_start"]) for h in hits] == [(pid, start)]
    # runs.show tells who was hit: the targets are the check's journaled outputs
    shown = cli("runs.show", json.loads(proc.stdout)["run_id"], env=env, check_rc=0)
    assert f"pid {pid}" in shown.stdout + shown.stderr

    again = cli("db.terminate", "--pid", str(pid), "--backend-start", start, "--json", env=env, check_rc=0)
    assert {s["status"] for s in steps_by_id(again).values()} == {"unchanged"}
    assert len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)) == before + 1


def test_reused_pid_is_refused_and_nothing_is_touched(source, sessions, cli):
    env, dsn = source
    victim = sessions.open("victim")
    pid = victim.info.backend_pid
    other = iso(backend_start(dsn, pid) - timedelta(microseconds=1))  # the backend that had this PID before
    before = len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION))
    proc = cli("db.terminate", "--pid", str(pid), "--backend-start", other, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, (proc.stdout, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: pid ") and last.endswith(
        "the PID was reused); nothing done; run `inv incident.diagnose --env local` again"), last
    assert alive(dsn, pid) and victim.execute("select 1").fetchone() == (1,)
    assert len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)) == before


def test_a_non_client_backend_is_refused(source, cli):
    env, dsn = source
    with psycopg.connect(dsn, autocommit=True) as conn:
        pid, start = conn.execute("select pid, backend_start from pg_stat_activity"
                                  " where backend_type = 'autovacuum launcher'").fetchone()
    proc = cli("db.terminate", "--pid", str(pid), "--backend-start", iso(start), env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip().splitlines()[-1] == (f"error: pid {pid} is not a client session (autovacuum"
                                                    " launcher): refused; db.terminate and db.cancel act on"
                                                    " client backends only")
    assert alive(dsn, pid)


def test_idle_in_transaction_older_than_hits_only_those(source, sessions, cli):
    env, dsn = source
    runner = sessions.open("active-long")
    sessions.in_background(runner, "select pg_sleep(120)")
    wait_state(dsn, runner.info.backend_pid, "active")
    old = [sessions.idle_in_transaction(f"old-idle-{i}") for i in range(2)]
    time.sleep(8)  # the span below; the fresh session must stay younger than it while the run acts
    fresh = sessions.idle_in_transaction("fresh-idle")
    plain_idle = sessions.open("plain-idle")
    before = len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION))
    proc = cli("db.terminate", "--idle-in-transaction-older-than", "8s", "--json", env=env, check_rc=0)
    listed = json.loads(proc.stdout)["outputs"]["sessions_to_terminate"]["targets"]
    assert sorted(t["pid"] for t in listed) == sorted(c.info.backend_pid for c in old)
    assert {t["application"] for t in listed} == {"old-idle-0", "old-idle-1"}
    assert all(t["state"] == "idle in transaction" and t["since_seconds"] >= 8 for t in listed)
    for conn in old:
        assert not alive(dsn, conn.info.backend_pid)
    for conn in (runner, fresh, plain_idle):
        assert alive(dsn, conn.info.backend_pid)
    hits = audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)[before:]
    assert sorted(h["args"]["pid"] for h in hits) == sorted(c.info.backend_pid for c in old)


def test_production_needs_yes_and_resume_acts_only_on_what_is_left(source, sessions, cli):
    """Production without --yes stops before acting (exit 4), the targets listed; one of them
    commits meanwhile; `--resume RUN_ID --yes` terminates only the one still idle in transaction."""
    env, dsn = source
    prod = {**env, "AEP_OPS_ENVIRONMENTS__LOCAL__PRODUCTION": "true"}
    first, second = sessions.idle_in_transaction("prod-idle-1"), sessions.idle_in_transaction("prod-idle-2")
    time.sleep(2.5)
    before = len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION))
    proc = cli("db.terminate", "--idle-in-transaction-older-than", "2s", "--json", env=prod)
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    assert "run again with --yes to approve" in proc.stderr
    run_id = latest_run_id(Path(env["AEP_OPS_STATE_DIR"]), "db.terminate")
    assert f"--resume {run_id}" in proc.stderr
    assert alive(dsn, first.info.backend_pid) and alive(dsn, second.info.backend_pid)
    assert len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)) == before

    first.commit()  # no longer idle in a transaction: it must be spared
    late = sessions.idle_in_transaction("late-idle")  # not on the approved list
    time.sleep(2.5)
    resumed = cli("db.terminate", "--resume", run_id, "--yes", "--json", env=prod, check_rc=0)
    assert steps_by_id(resumed)["ensure_sessions_terminated"]["status"] == "changed"
    assert alive(dsn, first.info.backend_pid) and alive(dsn, late.info.backend_pid)
    assert not alive(dsn, second.info.backend_pid)
    hits = audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)[before:]
    assert [h["args"]["pid"] for h in hits] == [second.info.backend_pid]
    assert all(h["run_id"] == run_id for h in hits)


@pytest.mark.parametrize("args, message", [
    ((), "db.terminate needs a target: --pid PID --backend-start ISO"),
    (("--pid", "0", "--backend-start", "2026-12-07T23:10:11+00:00"), "--pid '0': expected a backend PID"),
    (("--pid", "4242"), "--pid and --backend-start go together"),
    (("--backend-start", "2026-12-07T23:10:11+00:00"), "--pid and --backend-start go together"),
    (("--pid", "4242", "--backend-start", "2026-12-07T23:10:11"), "expected the ISO time with its UTC offset"),
    (("--pid", " ", "--backend-start", "2026-12-07T23:10:11+00:00"), "--pid is empty"),
    (("--idle-in-transaction-older-than", ""), "--idle-in-transaction-older-than is empty"),
    (("--idle-in-transaction-older-than", "0s"), "must be between 1 s and"),
    (("--idle-in-transaction-older-than", "soon"), "expected a span such as"),
    (("--idle-in-transaction-older-than", "10m", "--pid", "4242", "--backend-start", "2026-12-07T23:10:11+00:00"),
     "not both"),
], ids=["no-target", "pid-zero", "pid-alone", "start-alone", "naive-time", "blank-pid", "blank-span", "zero-span",
        "bad-span", "both"])
def test_bad_input_is_one_line_exit_2(cli, args, message):
    _refused(cli("db.terminate", *args), message)
