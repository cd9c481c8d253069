"""A pgBackRest restore held still: the moment a test acts (a kill, a port taken) falls provably
while the restore writes into the copy, not before it started or after it ended."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterator

from aep_ops.base import processes
from aep_ops.base.processes import signal_each
from tests.conftest import BIN, REPO
from tests.support.processes import pids, spawned, wait_applying, wait_for_process


def freeze_pgbackrest(pattern: str, timeout: float = 10) -> list[int]:
    """SIGSTOP every process matching ``pattern`` and wait until pgBackRest itself shows as stopped
    (state T in /proc): stopped, it cannot finish, so it is provably mid-restore at the kill."""
    targets = sorted(pids(pattern))
    signal_each(targets, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        states = {pid: (_program(pid), processes.state(pid)) for pid in targets}
        if None in (state for _, state in states.values()):
            raise AssertionError("pgBackRest restore finished before it could be frozen")
        if any(program == b"pgbackrest" and state == "T" for program, state in states.values()):
            return targets
        if time.monotonic() > deadline:
            raise AssertionError(f"pgBackRest never showed as stopped after SIGSTOP: {states}")
        time.sleep(0.01)


def wait_files_written(datadir: Path, proc, timeout: float = 60) -> None:
    """Until pgBackRest has written a first file into the copy (the kill then leaves a partial copy)."""
    deadline = time.monotonic() + timeout
    while not any(p.is_file() for p in datadir.rglob("*")):
        assert proc.poll() is None, f"the run exited with {proc.returncode} before pgBackRest wrote a file"
        assert time.monotonic() < deadline, f"pgBackRest wrote no file into {datadir} within {timeout:g}s"
        time.sleep(0.01)


def thaw(frozen: list[int], timeout: float = 10) -> None:
    """SIGCONT what ``freeze_pgbackrest`` stopped, pgBackRest before the runuser above it, until
    none is stopped. runuser (util-linux su) stops itself when it sees its child stopped and
    continues the child only once continued itself: continued first, it saw pgBackRest still
    stopped, stopped again for good, and the restore hung at 100% (pgBackRest a zombie under it)."""
    def stopped() -> list[tuple[bool, int]]:
        found = [(_program(pid) == b"runuser", pid) for pid in frozen if processes.state(pid) in ("T", "t")]
        return sorted(found)  # pgBackRest (False) first

    deadline = time.monotonic() + timeout
    while left := stopped():
        for _, pid in left:
            signal_each([pid], signal.SIGCONT)
            time.sleep(0.01)  # let it run before its parent looks at it
        if time.monotonic() > deadline:
            raise AssertionError(f"processes {left} stay stopped after SIGCONT")
        time.sleep(0.02)


def _program(pid: int) -> bytes | None:
    """The base name of the process's program (argv[0]); None once it is gone."""
    try:
        return os.path.basename(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0])
    except OSError:
        return None


@dataclass
class HeldRestore:
    """An ``inv pitr.restore`` whose pgBackRest is stopped mid-write; ``frozen`` what to thaw."""

    proc: subprocess.Popen
    run_id: str
    datadir: Path
    writing: str  # the pgrep -f pattern of its pgBackRest processes
    log: Path
    frozen: list[int] = field(default_factory=list)


@contextmanager
def restore_held_mid_write(state: Path, target: datetime, name: str) -> Iterator[HeldRestore]:
    """``inv pitr.restore --target-time TARGET --name NAME`` as a child, held once pgBackRest has
    written into the copy: the run provably inside ensure_restored, pgBackRest provably still
    restoring. The caller kills the run or thaws it; no pgBackRest of the copy outlives the block."""
    datadir = state / "pg" / "restores" / name / "data"
    writing = f"--pg1-path={datadir}"
    log = state / f"{name}-run.log"
    argv = [str(BIN / "inv"), "pitr.restore", "--target-time", target.isoformat(), "--name", name]
    held = None
    try:
        with spawned(argv, log=log, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}) as proc:
            run_id = wait_applying(state, "ensure_restored", timeout=120, proc=proc)
            assert wait_for_process(writing, 60), "pgbackrest restore never started"
            wait_files_written(datadir, proc)
            held = HeldRestore(proc, run_id, datadir, writing, log, freeze_pgbackrest(writing))
            yield held
    finally:
        signal_each((held.frozen if held else []) + list(pids(writing)), signal.SIGKILL)
