"""Killing, resuming and racing real CLI processes: the journal and the lock must hold up."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

from tests.conftest import BIN, REPO
from tests.support.processes import spawned


def start(log: Path, *args: str):
    """``inv ARGS`` as a child (context manager), its output going to ``log``."""
    return spawned([str(BIN / "inv"), *args], log=log, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def journal_rows(state_dir: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(state_dir / "journal.sqlite3") as conn:
        return conn.execute(sql, args).fetchall()


def wait_for_step(state_dir: Path, step_id: str, status: str = "running", timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state_dir / "journal.sqlite3").exists():
            try:
                rows = journal_rows(state_dir, "SELECT run_id FROM step_events WHERE step_id = ? AND status = ?"
                                               " AND note = 'applying'", step_id, status)
            except sqlite3.OperationalError:
                rows = []
            if rows:
                return rows[0][0]
        time.sleep(0.1)
    raise AssertionError(f"step {step_id} never reached {status}")


def test_sigkill_mid_step_then_resume_finishes_without_redoing(state_dir, cli, tmp_path):
    with start(tmp_path / "run.log", "demo.greet", "--name", "Ada", "--pause", "3") as proc:  # the resume pauses
        run_id = wait_for_step(state_dir, "ensure_greeting")  # again: keep it short
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert not (state_dir / "demo" / "greeting.txt").exists(), "the kill landed after the step wrote"
    assert journal_rows(state_dir, "SELECT status FROM runs WHERE id = ?", run_id) == [("running",)]

    resumed = cli("demo.greet", "--resume", run_id, "--json", check_rc=0)
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id and result["status"] == "succeeded"
    assert [(s["step_id"], s["earlier"]) for s in result["steps"]] == [
        ("ensure_demo_dir", True), ("ensure_greeting", False), ("ensure_checksum", False)]
    assert (state_dir / "demo" / "greeting.txt").read_text() == "Hello, Ada!\n"
    applied = journal_rows(state_dir, "SELECT step_id, COUNT(*) FROM step_events WHERE run_id = ? AND status = 'changed'"
                                      " GROUP BY step_id ORDER BY step_id", run_id)
    assert applied == [("ensure_checksum", 1), ("ensure_demo_dir", 1), ("ensure_greeting", 1)]
    assert journal_rows(state_dir, "SELECT attempts, status FROM runs WHERE id = ?", run_id) == [(2, "succeeded")]


def lock_holder_pid(lock_file: Path) -> int | None:
    """The pid the lock file names, if the flock is held right now (None otherwise)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: the holder wrote itself into the file before its first step
            try:
                return json.loads(os.pread(fd, 4096, 0))["pid"]
            except ValueError:  # not written yet, or mid-write
                return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def test_two_processes_race_one_wins_the_other_exits_3(state_dir, tmp_path):
    """Both start at once. Whichever takes the lock is frozen (SIGSTOP) while it holds it, so the
    other certainly runs while the lock is held, whatever the machine's load: it must exit 3
    naming the holder. Then the winner goes on and finishes."""
    lock_file = state_dir / "locks" / "demo.greet@local.lock"
    args = ("demo.greet", "--name", "Ada", "--pause", "3")
    with start(tmp_path / "a.log", *args) as a, start(tmp_path / "b.log", *args) as b:
        deadline = time.monotonic() + 60
        while (holder := lock_holder_pid(lock_file)) not in (a.pid, b.pid):
            if time.monotonic() > deadline:
                raise AssertionError("neither process held the lock within 60s")
            time.sleep(0.01)
        winner, loser = (a, b) if holder == a.pid else (b, a)
        winner.send_signal(signal.SIGSTOP)
        try:
            assert lock_holder_pid(lock_file) == winner.pid, "the winner let the lock go before it was frozen"
            assert loser.wait(timeout=60) == 3
        finally:
            winner.send_signal(signal.SIGCONT)
        assert winner.wait(timeout=60) == 0
    logs = {proc.pid: (tmp_path / name).read_text() for proc, name in ((a, "a.log"), (b, "b.log"))}
    lost, won = logs[loser.pid], logs[winner.pid]
    assert "demo.greet@local is locked by run " in lost and f"(pid {winner.pid} on " in lost and "since 20" in lost
    assert "result: succeeded" in won
    assert (state_dir / "demo" / "greeting.txt").read_text() == "Hello, Ada!\n"
    assert len(journal_rows(state_dir, "SELECT id FROM runs")) == 1, "the loser records no run"


def test_stale_lock_of_a_killed_process_is_taken_over(state_dir, cli, tmp_path):
    with start(tmp_path / "run.log", "demo.greet", "--name", "Ada", "--pause", "30") as proc:
        dead_run = wait_for_step(state_dir, "ensure_greeting")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    lock_file = state_dir / "locks" / "demo.greet@local.lock"
    assert json.loads(lock_file.read_text())["run_id"] == dead_run, "the dead holder is still on record"

    fresh = cli("demo.greet", "--name", "Bob", check_rc=0)
    assert "result: succeeded" in fresh.stdout
    assert "lock.stale_taken_over" in fresh.stderr and dead_run in fresh.stderr
    assert journal_rows(state_dir, "SELECT status FROM runs WHERE id = ?", dead_run) == [("interrupted",)]
    assert lock_file.read_text() == "", "released cleanly"
    assert (state_dir / "demo" / "greeting.txt").read_text() == "Hello, Bob!\n"


def test_sigterm_records_the_interruption_and_releases_the_lock(state_dir, cli, tmp_path):
    with start(tmp_path / "run.log", "demo.greet", "--name", "Ada", "--pause", "3") as proc:
        run_id = wait_for_step(state_dir, "ensure_greeting")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 1
    assert f"--resume {run_id}" in (tmp_path / "run.log").read_text()
    assert journal_rows(state_dir, "SELECT status FROM runs WHERE id = ?", run_id) == [("interrupted",)]
    assert (state_dir / "locks" / "demo.greet@local.lock").read_text() == "", "the lock was released"

    resumed = cli("demo.greet", "--resume", run_id, check_rc=0)
    assert f"run {run_id}" in resumed.stdout and "result: succeeded" in resumed.stdout, resumed.stdout
    assert (state_dir / "demo" / "greeting.txt").read_text() == "Hello, Ada!\n"
    assert journal_rows(state_dir, "SELECT attempts, status FROM runs WHERE id = ?", run_id) == [(2, "succeeded")]
