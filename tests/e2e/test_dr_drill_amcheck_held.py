"""dr.drill stopped while its pg_amcheck still runs: SIGTERM stops pg_amcheck with the copy's
server, SIGKILL takes pg_amcheck down with the drill (setpriv --pdeathsig), and ``--resume`` runs
pg_amcheck again and passes. Real PostgreSQL, real pgBackRest, real pg_amcheck.

pg_amcheck on a small database finishes in a tenth of a second, so the test makes it wait: the
drill's PostgreSQL bindir (AEP_PG_BINDIR) holds links to the real programs and, as pg_amcheck, a
script that records its pid and, while a hold file exists, blocks on a fifo before it execs the
real pg_amcheck. Every run of pg_amcheck by the drill is therefore the real one, started when the
test lets it; the signals land while the drill is proven (journal: check_amcheck running) to wait
for it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest

from aep_ops.pg.bin import DEFAULT_BINDIR
from tests.support.drill_process import drill_process, tail
from tests.support.fleet_hosts import wait_until
from tests.support.processes import release_fifo

pytestmark = pytest.mark.slow

WRAPPER = """#!/bin/sh
echo $$ >> "{hold}/pids"
if [ -e "{hold}/hold" ]; then read line < "{hold}/fifo"; fi
exec {real}/pg_amcheck "$@"
"""


@pytest.fixture
def held_bindir(local_env, monkeypatch):
    """Under the state dir: the postgres user runs initdb and pg_ctl from it (pytest's tmp_path is 0700)."""
    bindir, hold = local_env / "test-bin", local_env / "test-hold"
    bindir.mkdir()
    hold.mkdir()
    for program in Path(DEFAULT_BINDIR).iterdir():
        if program.name != "pg_amcheck":
            (bindir / program.name).symlink_to(program)
    wrapper = bindir / "pg_amcheck"
    wrapper.write_text(WRAPPER.format(hold=hold, real=DEFAULT_BINDIR))
    wrapper.chmod(0o755)
    os.mkfifo(hold / "fifo")
    (hold / "hold").touch()
    monkeypatch.setenv("AEP_PG_BINDIR", str(bindir))
    return hold


def _started(hold: Path) -> list[int]:
    path = hold / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _step(state: Path, run_id: str, step_id: str) -> str | None:
    with sqlite3.connect(state / "journal.sqlite3") as conn:
        row = conn.execute("select status from steps where run_id = ? and step_id = ?", (run_id, step_id)).fetchone()
    return row[0] if row else None


def _run_id(state: Path) -> str | None:
    try:
        with sqlite3.connect(state / "journal.sqlite3") as conn:
            row = conn.execute("select id from runs where runbook = 'dr.drill' order by started_at desc").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _wait_held(proc, state: Path, hold: Path, count: int) -> tuple[str, int]:
    """The drill waits in check_amcheck for its ``count``-th pg_amcheck, which the hold keeps blocked."""
    wait_until(lambda: len(_started(hold)) >= count or proc.poll() is not None, "pg_amcheck started", timeout=120)
    assert proc.poll() is None, "the drill ended before its pg_amcheck could be held"
    run_id = _run_id(state)
    wait_until(lambda: _step(state, run_id, "check_amcheck") == "running" or proc.poll() is not None,
               "the drill waiting for pg_amcheck in check_amcheck", timeout=60)
    assert proc.poll() is None, "the drill ended while pg_amcheck was held"
    pid = _started(hold)[count - 1]
    assert _alive(pid), "the held pg_amcheck runs"
    return run_id, pid


def test_a_drill_stopped_during_pg_amcheck_leaves_none_running_and_resumes(cli, local_env, held_bindir, tmp_path):
    cli("db.setup", check_rc=0, timeout=300)

    # SIGTERM (systemd stopping the timer's unit): the drill stops pg_amcheck and the copy's server.
    log = tmp_path / "drill-term.log"
    with drill_process(log) as proc:
        run_id, pid = _wait_held(proc, local_env, held_bindir, 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) != 0
    assert "interrupted: stopped pg_amcheck" in log.read_text(), tail(log)
    wait_until(lambda: not _alive(pid), "the held pg_amcheck stopped by the interrupted drill", timeout=10)
    with sqlite3.connect(local_env / "journal.sqlite3") as conn:
        status, error = conn.execute("select status, error from runs where id = ?", (run_id,)).fetchone()
    assert (status, error) == ("interrupted", "interrupted during step check_amcheck")

    # Resumed, then SIGKILLed while it waits for pg_amcheck again: nothing in the drill runs to clean
    # up, yet pg_amcheck dies with it.
    log = tmp_path / "drill-kill.log"
    with drill_process(log, "--resume", run_id) as proc:
        again, pid = _wait_held(proc, local_env, held_bindir, 2)
        assert again == run_id
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    wait_until(lambda: not _alive(pid), "pg_amcheck killed with the drill (pdeathsig)", timeout=10)

    (held_bindir / "hold").unlink()
    release_fifo(held_bindir / "fifo")
    resumed = cli("dr.drill", "--resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout)
    assert report["result"] == "passed"
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["check_amcheck"]["status"] == "passed" and "checked by pg_amcheck" in checks["check_amcheck"]["detail"]
    assert len(_started(held_bindir)) == 3, "the resume ran pg_amcheck once more, itself"
    assert all(not _alive(p) for p in _started(held_bindir))


def test_a_machine_without_pg_amcheck_fails_that_check_and_grades_the_others(cli, local_env, monkeypatch):
    bindir = local_env / "test-bin"
    bindir.mkdir()
    for program in Path(DEFAULT_BINDIR).iterdir():
        if program.name != "pg_amcheck":
            (bindir / program.name).symlink_to(program)
    monkeypatch.setenv("AEP_PG_BINDIR", str(bindir))
    cli("db.setup", check_rc=0, timeout=300)
    proc = cli("dr.drill", "--json", timeout=300)
    assert proc.returncode == 5, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["check_amcheck"]["status"] == "failed"
    assert checks["check_amcheck"]["detail"] == (f"PostgreSQL program `pg_amcheck` not found at {bindir}/pg_amcheck:"
                                                 " install postgresql-15 (make test / make drill install it)")
    assert {c for c, v in checks.items() if v["status"] != "passed"} == {"check_amcheck"}
    assert "Traceback" not in proc.stderr
