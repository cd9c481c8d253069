"""dr.drill stopped half-way: SIGTERM and Ctrl-C stop what the drill started; a SIGKILLed
drill's leftovers are reaped by the next drill, which says so. Real PostgreSQL, real pgBackRest.

The kill must land while the restore is in progress, and the test proves that it did: the
drill is frozen (SIGSTOP) and the journal and the filesystem are read while it cannot move;
only when they show the restore step running with the scratch cluster half-made (a pgBackRest
restore writing into it, or its server replaying WAL) is the signal sent, then the drill thawed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import ContextManager

import pytest

from aep_ops.pg import orphans
from tests.conftest import BIN, REPO
from tests.support.processes import pgrep, spawned

pytestmark = pytest.mark.slow


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


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _interrupt_mid_restore(cli, state: Path, signum: int, phases: tuple[str, ...], log: Path) -> tuple[str, Path, int]:
    cli("db.setup", check_rc=0, timeout=300)
    with drill_process(log) as proc:
        run_id, phase = freeze_mid_restore(proc, state, phases)
        base = state / "pg" / "restores" / f"drill-{run_id.lower()}"
        port = json.loads((base / "restore.json").read_text())["port"]
        proc.send_signal(signum)
        proc.send_signal(signal.SIGCONT)
        rc = proc.wait(timeout=120)
    assert rc != 0, f"an interrupted drill does not exit 0:\n{tail(log)}"
    with sqlite3.connect(state / "journal.sqlite3") as conn:
        status, error = conn.execute("select status, error from runs where id = ?", (run_id,)).fetchone()
    assert (status, error) == ("interrupted", "interrupted during step ensure_scratch_restored"), phase
    return run_id, base, port


def _nothing_left_running(base: Path, port: int) -> None:
    assert not _listening(port), f"a server still listens on the scratch port {port}"
    assert orphans.postmasters_of(base / "data") == [], "no postmaster of the scratch datadir is alive"
    assert orphans.writers_of(base / "data") == [], "no pgBackRest restore still writes into it"
    assert not base.exists() or json.loads((base / "restore.json").read_text())["status"] != "restoring"


def test_sigterm_during_replay_stops_the_scratch_server_and_removes_the_copy(cli, local_env, tmp_path):
    run_id, base, port = _interrupt_mid_restore(cli, local_env, signal.SIGTERM, ("replay",), tmp_path / "drill.log")
    _nothing_left_running(base, port)
    assert not base.exists(), "the half-restored copy is removed (resume restores again)"


def test_ctrl_c_during_the_pgbackrest_restore_stops_it_and_removes_the_copy(cli, local_env, tmp_path):
    run_id, base, port = _interrupt_mid_restore(cli, local_env, signal.SIGINT, ("pgbackrest", "replay"),
                                                tmp_path / "drill.log")
    _nothing_left_running(base, port)
    assert not base.exists(), "no copy left in status 'restoring'"
    resumed = cli("dr.drill", "--resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["result"] == "passed"


def test_next_drill_reaps_a_sigkilled_drills_leftovers_but_not_a_kept_copy(cli, local_env, tmp_path):
    kept = json.loads(cli("dr.drill", "--keep", "--json", timeout=300, check_rc=0).stdout)
    kept_name = f"drill-{kept['run_id'].lower()}"
    with drill_process(tmp_path / "drill.log") as proc:
        run_id, phase = freeze_mid_restore(proc, local_env, ("replay", "pgbackrest"), earlier={kept["run_id"]})
        base = local_env / "pg" / "restores" / f"drill-{run_id.lower()}"
        port = json.loads((base / "restore.json").read_text())["port"]
        proc.send_signal(signal.SIGKILL)  # nothing runs in the drill to clean up: everything stays
        proc.wait(timeout=30)
    if phase == "replay":
        assert orphans.postmasters_of(base / "data"), "control: the killed drill left its server running"

    fresh = cli("dr.drill", "--json", timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    report = json.loads(fresh.stdout)
    assert report["reaped_leftovers"] == [base.name]
    assert f"reaped leftover scratch copy {base.name} of run {run_id}" in fresh.stderr
    _nothing_left_running(base, port)
    assert not base.exists() and pgrep(f"postgres -D {base}") == ""
    listing = cli("pitr.list", check_rc=0).stdout
    assert kept_name in listing, "a copy kept with --keep is not reaped"
