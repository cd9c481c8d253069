"""A drill run as a child process, and the moment its restore can be interrupted: the tests
that stop a drill half-way (SIGTERM, Ctrl-C, SIGKILL, a failing check) share these."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import ContextManager

from aep_ops.pg import orphans
from tests.conftest import BIN, REPO
from tests.support.processes import spawned


def drill_process(log: Path, *args: str) -> ContextManager[subprocess.Popen]:
    """``inv dr.drill`` in its own process group, its output going to ``log``; killed (with what it
    started, if it still runs) on the way out, whatever the test asserted. SIGINT and SIGTERM are
    at their defaults in it, as in a terminal: run in the background (``nohup ... &``, a CI step), the
    tests inherit an ignored SIGINT, and so did the drill, which then finished as if never stopped."""
    return spawned([str(BIN / "inv"), "dr.drill", *args], log=log, cwd=REPO, preexec_fn=_default_signals,
                   env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})


def _default_signals() -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _restore_step(state: Path, earlier: set[str]) -> tuple[str | None, list[str]]:
    """The run (not one of ``earlier``) whose restore step started, and that step's events so far."""
    try:
        with sqlite3.connect(state / "journal.sqlite3") as conn:
            rows = [r for r in conn.execute("select run_id, status, coalesce(note, '') from step_events"
                                            " where step_id = 'ensure_scratch_restored' order by at")
                    if r[0] not in earlier]
    except sqlite3.Error:
        return None, []
    return (rows[-1][0] if rows else None), [f"{status}:{note}" for _, status, note in rows]


def _phase(state: Path, run_id: str) -> str | None:
    """'pgbackrest' while a pgBackRest restore writes into the scratch copy, 'replay' while its
    server runs but the copy is not promoted; None otherwise."""
    base = state / "pg" / "restores" / f"drill-{run_id.lower()}"
    try:
        meta = json.loads((base / "restore.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("status") != "restoring":
        return None
    if orphans.writers_of(base / "data"):
        return "pgbackrest"
    return "replay" if (base / "data" / "postmaster.pid").exists() else None


def freeze_mid_restore(proc: subprocess.Popen, state: Path, phases: tuple[str, ...], earlier: set[str] = frozenset(),
                        timeout: float = 240) -> tuple[str, str]:
    """SIGSTOP the drill at a moment when its restore step runs in one of ``phases``; returns
    (run id, phase) with the drill still stopped (the caller sends SIGCONT). Fails if the step
    finished first. Only the drill's own process is stopped: pgBackRest and the copy's server go on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the drill ended before its restore could be interrupted"
        proc.send_signal(signal.SIGSTOP)
        run_id, events = _restore_step(state, earlier)
        phase = _phase(state, run_id) if run_id else None
        running = bool(events) and events[-1].startswith("running") and not any(
            e.startswith(("changed", "unchanged", "failed")) for e in events)
        if run_id and events:
            assert running, f"the restore step finished before the kill could land: {events}"
        if running and phase in phases:
            return run_id, phase
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.005)  # poll interval: the drill runs between looks
    raise AssertionError(f"the restore never reached {phases}")
