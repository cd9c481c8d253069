"""db.cancel through the CLI against the local AEP source (real PostgreSQL 15): a pg_sleep query
running longer than N is cancelled and its session stays connected; an idle-in-transaction
session is left alone (cancelling does nothing there); a run killed with SIGKILL while its verify
waits resumes and acts only on what is still running; bad input is exit 2 in one line."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from aep_ops.incident.postgres_rules import iso
from tests.conftest import BIN, REPO
from tests.support.pg_conditions import (STUBBORN_SQL, Sessions, activity, alive, audit_lines, backend_start,
                                         local_source, steps_by_id, wait_state, wait_until)
from tests.support.processes import assert_killed_mid_step, latest_run_id, spawned

ACTION = "db.cancel:cancel"


@pytest.fixture(scope="module")
def source():
    with local_source() as (env, dsn):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(STUBBORN_SQL)
        yield env, dsn


@pytest.fixture
def sessions(source):
    s = Sessions(source[1])
    yield s
    s.close()


def test_cancels_a_long_query_and_the_session_stays(source, sessions, cli):
    env, dsn = source
    long_q, short_q = sessions.open("sleeper-long"), sessions.open("sleeper-short")
    sessions.in_background(long_q, "select pg_sleep(120)")
    wait_state(dsn, long_q.info.backend_pid, "active")
    time.sleep(6)
    sessions.in_background(short_q, "select pg_sleep(120)")  # runs, but for less than the span
    wait_state(dsn, short_q.info.backend_pid, "active")
    idle_tx = sessions.idle_in_transaction("idle-tx")
    before = len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION))
    proc = cli("db.cancel", "--running-longer-than", "6s", "--json", env=env, check_rc=0)
    assert steps_by_id(proc)["ensure_queries_cancelled"]["status"] == "changed"
    pid = long_q.info.backend_pid
    wait_until(lambda: pid in sessions.errors, 10, "the cancelled query's error")
    assert isinstance(sessions.errors[pid], psycopg.errors.QueryCanceled)
    assert long_q.execute("select 1").fetchone() == (1,)  # still connected
    assert activity(dsn, short_q.info.backend_pid)[0] == "active"
    assert activity(dsn, idle_tx.info.backend_pid)[0] == "idle in transaction"
    hits = audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)[before:]
    assert [h["args"]["pid"] for h in hits] == [pid]

    again = cli("db.cancel", "--running-longer-than", "6s", "--json", env=env, check_rc=0)
    assert steps_by_id(again)["ensure_queries_cancelled"]["status"] == "unchanged"
    assert len(audit_lines(env["AEP_OPS_STATE_DIR"], ACTION)) == before + 1


def test_idle_in_transaction_by_pid_is_left_alone(source, sessions, cli):
    env, dsn = source
    idle_tx = sessions.idle_in_transaction("idle-tx")
    pid = idle_tx.info.backend_pid
    proc = cli("db.cancel", "--pid", str(pid), "--backend-start", iso(backend_start(dsn, pid)), "--json",
               env=env, check_rc=0)
    steps = steps_by_id(proc)
    assert {s["status"] for s in steps.values()} == {"unchanged"}
    assert "cancelling does nothing (use db.terminate" in steps["queries_to_cancel"]["summary"]
    assert activity(dsn, pid)[0] == "idle in transaction"


def test_killed_while_verifying_then_resume_finishes(source, sessions, cli, tmp_path):
    """The query ignores cancellation (it catches query_canceled) until the test lets it go, so the
    run is certainly inside its verify wait when it is killed: its audit line is written (apply
    done) and the query still runs. Resumed after the query honours cancels, the run cancels it
    again (it is still running the same query) and verifies."""
    env, dsn = source
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("delete from stubborn_ctl")
    stubborn = sessions.open("stubborn")
    pid = stubborn.info.backend_pid
    sessions.in_background(stubborn, "select stubborn_sleep()")
    wait_state(dsn, pid, "active")
    time.sleep(1.5)
    state = Path(env["AEP_OPS_STATE_DIR"])
    before = len(audit_lines(state, ACTION))
    argv = [str(BIN / "inv"), "db.cancel", "--running-longer-than", "1s"]
    with spawned(argv, log=tmp_path / "run.log", cwd=REPO, env={**_clean_env(), **env, "PYTHONPATH": str(REPO)}) \
            as proc:
        wait_until(lambda: len(audit_lines(state, ACTION)) > before or proc.poll() is not None, 60,
                   "the cancel's audit line")
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    run_id = latest_run_id(state, "db.cancel")
    assert_killed_mid_step(state, run_id, "ensure_queries_cancelled")
    assert activity(dsn, pid)[0] == "active" and pid not in sessions.errors  # it ignored the cancel

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("insert into stubborn_ctl values (true)")
    resumed = cli("db.cancel", "--resume", run_id, "--json", env=env, check_rc=0)
    assert steps_by_id(resumed)["ensure_queries_cancelled"]["status"] == "changed"
    wait_until(lambda: pid in sessions.errors, 10, "the cancelled query's error")
    assert isinstance(sessions.errors[pid], psycopg.errors.QueryCanceled)
    assert alive(dsn, pid) and stubborn.execute("select 1").fetchone() == (1,)
    hits = audit_lines(state, ACTION)[before:]
    assert [h["args"]["pid"] for h in hits] == [pid, pid] and {h["run_id"] for h in hits} == {run_id}


def _clean_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}


@pytest.mark.parametrize("args, message", [
    ((), "db.cancel needs a target: --pid PID --backend-start ISO"),
    (("--pid", "0", "--backend-start", "2026-12-07T23:10:11+00:00"), "--pid '0': expected a backend PID"),
    (("--pid", "4242"), "--pid and --backend-start go together"),
    (("--running-longer-than", " "), "--running-longer-than is empty"),
    (("--running-longer-than", "0"), "must be between 1 s and"),
], ids=["no-target", "pid-zero", "pid-alone", "blank-span", "zero-span"])
def test_bad_input_is_one_line_exit_2(cli, args, message):
    proc = cli("db.cancel", *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert message in lines[0] and "Traceback" not in proc.stdout + proc.stderr
