"""Helpers for the kill-and-resume tests: start a CLI run with its output going to a file (a pipe
read only at wait() deadlocks past 64 KiB), find the processes a run started as `pgrep -f` would,
and prove from the journal where a kill landed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from aep_ops.base.processes import alive as process_alive, signal_each

__all__ = ["process_alive"]  # the tests' name for aep_ops.base.processes.alive


def pgrep(pattern: str) -> str:
    """PIDs (one per line) of processes whose command line contains ``pattern``; "" when none."""
    return subprocess.run(["pgrep", "-f", "--", pattern], capture_output=True, text=True).stdout.strip()


def wait_for_process(pattern: str, timeout: float) -> bool:
    """True once a process matching ``pattern`` runs, polling every 10 ms; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not pgrep(pattern):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def pids(pattern: str) -> set[int]:
    """The PIDs ``pgrep -f pattern`` finds now."""
    return {int(pid) for pid in pgrep(pattern).split()}


def kill_matching(pattern: str, timeout: float = 30) -> set[int]:
    """SIGKILL the processes whose command line contains ``pattern`` -- a path that only this
    test's processes carry, e.g. its own pgBackRest config -- and wait until none is left: the
    children a killed run leaves behind (they run in process groups of their own). Returns the
    PIDs it killed."""
    killed = pids(pattern)
    signal_each(killed, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pgrep(pattern):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes matching {pattern!r} still run {timeout:.0f}s after SIGKILL: "
                                 f"{pgrep(pattern)}")
        time.sleep(0.05)
    return killed


def kill_run_mid_step(proc: subprocess.Popen, state_dir: Path, step_id: str, child: str,
                      timeout: float = 60) -> str:
    """kill -9 the CLI run ``proc`` while ``step_id`` applies and its ``child`` (a pattern for
    ``pgrep -f``) runs; returns the run id once it is proven that the kill landed there: the
    child process seen before the kill is still there after it (so it ran at the kill, and goes
    on), and the journal still says the step is running.

    The child is not frozen with SIGSTOP to make that certain: the kill orphans the child's
    process group, and the kernel sends SIGHUP (then SIGCONT) to an orphaned group holding a
    stopped process, so the frozen child would die with the run. The children these tests
    watch (a pgBackRest backup) run for seconds; the kill follows their start by milliseconds."""
    run_id = wait_applying(state_dir, step_id, timeout=timeout, proc=proc)
    assert wait_for_process(child, timeout), f"{child!r} never started during step {step_id}"
    before = pids(child)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert before & pids(child), f"{child!r} was no longer running when the kill landed"
    assert_killed_mid_step(state_dir, run_id, step_id)
    return run_id


def latest_run_id(state_dir: Path, runbook: str) -> str | None:
    """The newest run of ``runbook`` in the state directory's SQLite journal."""
    with sqlite3.connect(state_dir / "journal.sqlite3") as conn:
        row = conn.execute("SELECT id FROM runs WHERE runbook = ? ORDER BY started_at DESC LIMIT 1",
                           (runbook,)).fetchone()
    return row[0] if row else None


def _journal_rows(state_dir: Path, sql: str, args: tuple) -> list[tuple]:
    """Rows from the SQLite journal; [] while the run has not created it yet."""
    try:
        with sqlite3.connect(state_dir / "journal.sqlite3", timeout=5) as conn:
            return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError:
        return []


def wait_applying(state_dir: Path, step_id: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> str:
    """The run id once ``step_id`` is applying, read from the journal as a person would; with
    ``proc``, only a run of that process counts (the journal records each attempt's pid: an
    earlier run of the same runbook in a shared state dir is not this one), and it fails early,
    saying so, when ``proc`` exits first."""
    sql = ("SELECT e.run_id FROM step_events e JOIN runs r ON r.id = e.run_id"
           " WHERE e.step_id = ? AND e.note = 'applying'")
    args: tuple = (step_id,)
    if proc is not None:
        sql, args = sql + " AND r.pid = ?", (step_id, proc.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = _journal_rows(state_dir, sql, args)
        if rows:
            return rows[0][0]
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run exited with {proc.returncode} before step {step_id} started applying")
        time.sleep(0.02)
    raise AssertionError(f"step {step_id} never started applying within {timeout:.0f}s")


def wait_for_output(log: Path, text: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    """Wait until ``text`` appears in the log of a ``spawned`` child; fail early, saying so, when
    ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while text not in (log.read_text(errors="replace") if log.exists() else ""):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the child exited with {proc.returncode} before writing {text!r}: "
                                 f"{log.read_text(errors='replace')[-1000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never appeared in {log} within {timeout:.0f}s")
        time.sleep(0.02)


def step_status(state_dir: Path, run_id: str, step_id: str) -> str | None:
    """The journaled status of one step of a run (None when the run never reached it)."""
    rows = _journal_rows(state_dir, "SELECT status FROM steps WHERE run_id = ? AND step_id = ?", (run_id, step_id))
    return rows[0][0] if rows else None


def assert_killed_mid_step(state_dir: Path, run_id: str, step_id: str) -> None:
    """The kill landed inside ``step_id``: the run is still 'running' in the journal and that step
    began but never finished (not succeeded, failed or skipped)."""
    run = _journal_rows(state_dir, "SELECT status FROM runs WHERE id = ?", (run_id,))
    assert run == [("running",)], f"run {run_id} is {run}, not running: the kill did not land mid-run"
    status = step_status(state_dir, run_id, step_id)
    assert status == "running", f"step {step_id} is {status!r}, not running: the kill did not land inside it"


@contextmanager
def spawned(argv: list[str], *, log: Path, **popen: object) -> Iterator[subprocess.Popen]:
    """A child in its own process group with stdout+stderr going to ``log``; the group is killed on
    the way out, whatever the test asserted."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **popen)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait(timeout=30)


def release_fifo(fifo: Path) -> bool:
    """Write one line to ``fifo`` if a process is blocked reading it (a held command, upgrade or
    restart); False when none is (the fifo is missing, or nobody waits on it)."""
    import errno

    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ENXIO, errno.ENOENT):
            return False
        raise
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)
    return True
