"""A killed run's pgBackRest restore keeps writing into the copy's data directory; the resume
must stop it before clearing the directory (CI saw "Directory not empty" without this).

The writer here is a stand-in: a Python loop that creates files under DATADIR/base/5 and
carries ``--pg1-path=DATADIR`` in its arguments, as pgBackRest and each of its workers do. A
real restore of the test database finishes in about a second, too soon to catch reliably;
tests/e2e/test_dr_drill.py kills a real drill mid-restore."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from aep_ops.pg import orphans

WRITER = """
import os, sys, time
base = os.path.join(sys.argv[1].split("=", 1)[1], "base", "5")
n = 0
while True:
    os.makedirs(base, exist_ok=True)
    open(os.path.join(base, str(n)), "w").close()
    n += 1
    time.sleep(0.001)
"""


def _start_writer(datadir, *, ignore_term=False):
    code = ("import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "") + WRITER
    proc = subprocess.Popen([sys.executable, "-c", code, f"--pg1-path={datadir}"])
    deadline = time.monotonic() + 30
    while not (datadir / "base" / "5").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the writer never wrote under {datadir} (exit {proc.returncode})")
        time.sleep(0.01)
    return proc


def test_writers_are_found_by_their_data_directory_only(tmp_path):
    mine, other = tmp_path / "x" / "data", tmp_path / "y" / "data"
    writer, bystander = _start_writer(mine), _start_writer(other)
    try:
        assert orphans.writers_of(mine) == [writer.pid]
    finally:
        writer.kill(), bystander.kill()
        writer.wait(), bystander.wait()


def test_stopped_writers_leave_a_directory_that_can_be_removed(tmp_path):
    datadir = tmp_path / "data"
    writer = _start_writer(datadir)
    try:
        assert orphans.stop_writers(datadir) == [writer.pid]
        assert writer.wait(timeout=5) is not None
        shutil.rmtree(datadir)  # raised "Directory not empty" while the writer ran
        assert not datadir.exists(), "nothing writes into the directory any more"
        assert orphans.stop_writers(datadir) == []
    finally:
        writer.kill()
        writer.wait()


def test_a_writer_ignoring_sigterm_is_killed_after_the_grace(tmp_path):
    datadir = tmp_path / "data"
    writer = _start_writer(datadir, ignore_term=True)
    try:
        orphans.stop_writers(datadir, grace=0.5)
        assert writer.wait(timeout=30) == -9, "the writer that ignores SIGTERM was not killed"
    finally:
        writer.kill()
        writer.wait()
