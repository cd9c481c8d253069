"""dr.drill stopped half-way: SIGTERM and Ctrl-C stop what the drill started; a SIGKILLed
drill's leftovers are reaped by the next drill, which says so. Real PostgreSQL, real pgBackRest.

The kill must land while the restore is in progress, and the test proves that it did: the
drill is frozen (SIGSTOP) and the journal and the filesystem are read while it cannot move;
only when they show the restore step running with the scratch cluster half-made (a pgBackRest
restore writing into it, or its server replaying WAL) is the signal sent, then the drill thawed.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from aep_ops.pg import orphans
from tests.support.drill_process import drill_process, freeze_mid_restore, tail
from tests.support.processes import pgrep

pytestmark = pytest.mark.slow


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
