"""Killing, resuming and racing real CLI processes: the journal and the lock must hold up."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from tests.conftest import BIN, REPO


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "inv"), *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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


def test_sigkill_mid_step_then_resume_finishes_without_redoing(state_dir, cli):
    proc = start("demo.greet", "--name", "Ada", "--pause", "3")  # the resume pauses again: keep it short
    run_id = wait_for_step(state_dir, "ensure_greeting")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert not (state_dir / "demo" / "greeting.txt").exists()
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


def test_two_processes_race_one_wins_the_other_exits_3(state_dir):
    first = start("demo.greet", "--name", "Ada", "--pause", "3")
    second = start("demo.greet", "--name", "Ada", "--pause", "3")
    outcomes = sorted([(first.wait(timeout=60), first.stderr.read()), (second.wait(timeout=60), second.stderr.read())])
    (win_rc, _), (lose_rc, lose_err) = outcomes
    assert (win_rc, lose_rc) == (0, 3)
    assert "demo.greet@local is locked by run 2" in lose_err
    assert "pid " in lose_err and " on " in lose_err and "since 20" in lose_err
    assert len(journal_rows(state_dir, "SELECT id FROM runs")) == 1, "the loser records no run"


def test_stale_lock_of_a_killed_process_is_taken_over(state_dir, cli):
    proc = start("demo.greet", "--name", "Ada", "--pause", "30")
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


def test_sigterm_records_the_interruption_and_releases_the_lock(state_dir, cli):
    proc = start("demo.greet", "--name", "Ada", "--pause", "3")
    run_id = wait_for_step(state_dir, "ensure_greeting")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 1
    assert f"--resume {run_id}" in proc.stderr.read()
    assert journal_rows(state_dir, "SELECT status FROM runs WHERE id = ?", run_id) == [("interrupted",)]
    assert cli("demo.greet", "--resume", run_id).returncode == 0

