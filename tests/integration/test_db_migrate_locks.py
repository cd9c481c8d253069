"""db.migrate against real PostgreSQL 15 under lock contention: lock_timeout with bounded
jittered retries keeps writers' waits short; the queue watcher cancels a migration that holds
writers up; a run killed while retrying resumes and applies only the rest."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.conftest import BIN, REPO
from tests.support.migrate_source import Migrations, Writer, connect, journal_notes, sql
from tests.support.processes import assert_killed_mid_step, spawned, wait_applying, wait_for_output

pytestmark = pytest.mark.slow
LOCK_TIMEOUT_MS = 300


def _result(proc) -> dict:
    return json.loads(proc.stdout)


def test_blocked_migration_retries_then_aborts_while_writers_stay_fast(source, cli, tmp_path, monkeypatch):
    """A session idle in a transaction holds ACCESS SHARE on the table; the migration's ALTER
    TABLE queues for ACCESS EXCLUSIVE, and every insert queues behind it until lock_timeout
    ends the attempt. p99 of the writer's inserts stays under lock_timeout + 100 ms."""
    sql(source, "create table blk_t (id bigserial primary key, v int)")
    mig = Migrations(tmp_path, monkeypatch, "blocked")
    mig.up("001_add_note.sql", "alter table blk_t add column note text;")
    mig.config(lock_timeout_ms=LOCK_TIMEOUT_MS, retries=3, retry_base_ms=200, max_queue_ms=60000)
    writer = Writer(source, "blk_t")
    with connect(source, application_name="test-blocker") as blocker:
        blocker.autocommit = False
        blocker.execute("select * from blk_t limit 1")  # ACCESS SHARE held, idle in transaction
        blocker_pid = blocker.info.backend_pid
        writer.start()
        t0 = time.monotonic()
        proc = cli("db.migrate", "--json", check_rc=1)
        seconds = time.monotonic() - t0
        stats = writer.finish()
        blocker.rollback()
    result = _result(proc)
    run_id = result["run_id"]
    step = {s["step_id"]: s for s in result["steps"]}["run_migration"]
    assert step["status"] == "failed"
    assert "gave up after 4 attempts" in step["error"] and f"lock_timeout {LOCK_TIMEOUT_MS} ms" in step["error"]
    assert f"pid {blocker_pid} (postgres test-blocker, idle in transaction" in step["error"]
    notes = [n for n in journal_notes(source, run_id, "run_migration") if n.startswith("lock timeout")]
    assert len(notes) == 3, notes  # 3 retries after the first attempt, then it gave up
    waits = [float(n.rsplit("retry in ", 1)[1].split(" ")[0]) for n in notes]
    assert all(0 <= w <= 0.2 * 2 ** i for i, w in enumerate(waits)), waits  # full jitter, bounded
    assert "note" not in [r[0] for r in sql(source, "select column_name from information_schema.columns"
                                                    " where table_name = 'blk_t'")]
    assert mig.applied(source) == []
    assert stats["max_ms"] > LOCK_TIMEOUT_MS * 0.5, f"the writer never queued behind the migration: {stats}"
    assert stats["p99_ms"] < LOCK_TIMEOUT_MS + 100, stats
    print(f"\nblocked: run {seconds:.1f} s, retry waits {waits} s, writer {stats}")


def test_writers_queued_behind_a_slow_migration_cancel_it(source, cli, tmp_path, monkeypatch):
    """The migration holds ACCESS EXCLUSIVE and runs long: lock_timeout cannot help (it has the
    lock); the watcher sees the writer wait > max_queue_ms and cancels the migration."""
    sql(source, "create table slow_t (id bigserial primary key, v int)")
    mig = Migrations(tmp_path, monkeypatch, "slow")
    mig.up("001_slow.sql", "lock table slow_t in access exclusive mode;\nselect pg_sleep(20);\n"
                           "alter table slow_t add column note text;")
    mig.config(lock_timeout_ms=2000, max_queue_ms=400)
    writer = Writer(source, "slow_t")
    writer.start()
    t0 = time.monotonic()
    proc = cli("db.migrate", "--json", check_rc=1)
    seconds = time.monotonic() - t0
    stats = writer.finish()
    step = {s["step_id"]: s for s in _result(proc)["steps"]}["run_migration"]
    assert "cancelled by aep-ops: 1 session(s) queued behind the migration" in step["error"], step["error"]
    assert "test-writer" in step["error"] and "rolled back" in step["error"]
    assert seconds < 20, "cancelled long before its pg_sleep(20) ended"
    assert mig.applied(source) == []
    assert stats["max_ms"] < 400 + 600, stats  # max_queue_ms + the watcher's poll + the cancel
    print(f"\nqueue watcher: run {seconds:.1f} s, writer {stats}")


def test_killed_while_retrying_then_resumed_applies_only_the_rest(source, cli, tmp_path, monkeypatch):
    """kill -9 of aep-ops while run_migration retries a lock timeout on 002 (001 is applied):
    the server drops the orphaned session, the resume keeps the restore point and applies 002 only."""
    sql(source, "create table kill_t (id bigserial primary key, v int)")
    mig = Migrations(tmp_path, monkeypatch, "killed")
    mig.up("001_table.sql", "create table if not exists kill_side (id int);")
    mig.up("002_add_note.sql", "alter table kill_t add column note text;")
    mig.config(lock_timeout_ms=200, retries=100, retry_base_ms=50)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with connect(source, application_name="test-blocker") as blocker:
        blocker.autocommit = False
        blocker.execute("select * from kill_t limit 1")
        with spawned([str(BIN / "inv"), "db.migrate"], log=tmp_path / "killed.log", cwd=REPO, env=env) as proc:
            run_id = wait_applying(source, "run_migration", proc=proc)
            wait_for_output(tmp_path / "killed.log", "migrate.lock_timeout", proc=proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert_killed_mid_step(source, run_id, "run_migration")
        assert [name for name, _ in mig.applied(source)] == ["001_table.sql"]
        deadline = time.monotonic() + 10
        while sql(source, "select pid from pg_stat_activity where application_name like 'aep-ops-migrate:%'"):
            assert time.monotonic() < deadline, "the killed run's session outlived it"
            time.sleep(0.05)
        blocker.rollback()
    point = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
    recorded = {s["step_id"]: s for s in point["steps"]}["record_restore_point"]["outputs"]
    resumed = _result(cli("db.migrate", "--resume", run_id, "--json", check_rc=0))
    assert resumed["status"] == "succeeded"
    earlier = {s["step_id"]: s["earlier"] for s in resumed["steps"]}
    assert earlier["record_restore_point"] and not earlier["run_migration"]
    assert resumed["outputs"]["run_migration"]["applied"] == ["002_add_note.sql"]
    assert resumed["restore_point"]["lsn"] == recorded["lsn"]
    assert mig.applied(source) == [("001_table.sql", run_id), ("002_add_note.sql", run_id)]


def test_a_migration_command_gets_the_session_settings_and_its_lock_timeouts_are_retried(
        source, cli, tmp_path, monkeypatch):
    """A tool (psql standing in for node-pg-migrate) gets lock_timeout through PGOPTIONS and the
    run's tag through PGAPPNAME; its "lock timeout" error is retried, then the run gives up;
    once the blocker is gone the same run configuration succeeds."""
    from aep_ops.pg.bin import pg_bin

    sql(source, "create table cmd_t (id bigserial primary key, v int)")
    mig = Migrations(tmp_path, monkeypatch, "command")
    psql = [pg_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1"]
    probe = ("create table if not exists cmd_probe as select current_setting('lock_timeout') as lock_timeout,"
             " current_setting('application_name') as app")
    mig.config_command(command=[*psql, "-c", probe, "-c", "alter table cmd_t add column if not exists note text"],
                       lock_timeout_ms=200, retries=2, retry_base_ms=50)
    with connect(source, application_name="test-blocker") as blocker:
        blocker.autocommit = False
        blocker.execute("select * from cmd_t limit 1")
        failed = _result(cli("db.migrate", "--json", check_rc=1))
        blocker.rollback()
    error = {s["step_id"]: s for s in failed["steps"]}["run_migration"]["error"]
    assert "gave up after 3 attempts" in error and "canceling statement due to lock timeout" in error, error
    assert "test-blocker" in error
    done = _result(cli("db.migrate", "--json", check_rc=0))
    assert done["outputs"]["run_migration"]["attempts"] == 1
    assert sql(source, "select count(*) from information_schema.columns where table_name = 'cmd_t'"
                       " and column_name = 'note'") == [(1,)]
    assert sql(source, "select lock_timeout, app from cmd_probe") == [("200ms", f"aep-ops-migrate:{failed['run_id']}")]
