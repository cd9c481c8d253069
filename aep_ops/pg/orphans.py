"""Processes a killed run left writing into a data directory.

Killing aep-ops (SIGKILL, an OOM kill, a lost terminal) does not kill the pgBackRest
restore it started: that process and its workers keep writing into the copy's data
directory. Clearing the directory under them fails ("Directory not empty") or, worse,
a fresh restore would share the directory with the old one. Every pgBackRest process
names its data directory as ``--pg1-path=DIR`` (the workers too), which is how they are
found here.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from aep_ops.errors import StepFailed
from aep_ops.log import get_logger

log = get_logger(__name__)


def writers_of(datadir: str | os.PathLike[str]) -> list[int]:
    """PIDs of live processes whose arguments include ``--pg1-path=DATADIR`` (not this one)."""
    wanted = f"--pg1-path={Path(datadir)}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if wanted in argv:
            found.append(int(entry.name))
    return found


def stop_writers(datadir: str | os.PathLike[str], *, grace: float = 10.0) -> list[int]:
    """SIGTERM every writer of DATADIR, SIGKILL what is left after ``grace`` seconds, and
    return only once none is alive. Returns the PIDs that were stopped."""
    pids = left = writers_of(datadir)
    if pids:
        log.warning("pg.orphans.stopping", datadir=str(datadir), pids=pids)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not left:
            return pids
        _signal(left, signum)
        deadline = time.monotonic() + grace
        while (left := writers_of(datadir)) and time.monotonic() < deadline:
            time.sleep(0.05)
    if left:
        raise StepFailed(f"processes {left} still write into {datadir} after SIGKILL; stop them by hand, then resume")
    return pids


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
