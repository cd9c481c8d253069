"""Helpers for the kill-and-resume tests: find the processes a run started, as `pgrep -f` would."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path


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


def latest_run_id(state_dir: Path, runbook: str) -> str | None:
    """The newest run of ``runbook`` in the state directory's SQLite journal."""
    with sqlite3.connect(state_dir / "journal.sqlite3") as conn:
        row = conn.execute("SELECT id FROM runs WHERE runbook = ? ORDER BY started_at DESC LIMIT 1",
                           (runbook,)).fetchone()
    return row[0] if row else None
