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
from pathlib import Path
from typing import Callable

from aep_ops.base import processes
from aep_ops.base.errors import StepFailed
from aep_ops.base.log import get_logger

log = get_logger(__name__)


def writers_of(datadir: str | os.PathLike[str]) -> list[int]:
    """PIDs of live processes whose arguments include ``--pg1-path=DATADIR`` (not this one)."""
    wanted = f"--pg1-path={Path(datadir)}".encode()
    return processes.with_argv(lambda argv: wanted in argv)


def postmasters_of(datadir: str | os.PathLike[str]) -> list[int]:
    """PIDs of ``postgres -D DATADIR`` processes (as pg_ctl starts them): a server just started
    may run before it has written postmaster.pid, and an interrupt can land in that moment."""
    wanted = str(Path(datadir)).encode()

    def is_postmaster(argv: list[bytes]) -> bool:
        return bool(argv) and os.path.basename(argv[0]) == b"postgres" and any(
            flag == b"-D" and value == wanted for flag, value in zip(argv, argv[1:]))

    return processes.with_argv(is_postmaster)


def stop_postmasters(datadir: str | os.PathLike[str], *, grace: float = 10.0) -> list[int]:
    """SIGQUIT (PostgreSQL's immediate shutdown) every postmaster of DATADIR, SIGKILL after ``grace``."""
    return _stop(lambda: postmasters_of(datadir), signal.SIGQUIT, grace,
                 lambda left: f"PostgreSQL processes {left} of {datadir} survive SIGKILL; stop them by hand")


def _stop(find: Callable[[], list[int]], first: int, grace: float, survivors: Callable[[list[int]], str]) -> list[int]:
    """Signal what ``find`` returns with ``first``, then SIGKILL what is left after ``grace``;
    return only once none is alive (the PIDs found at the start)."""
    pids, left = processes.stop(find, first, grace)
    if left:
        raise StepFailed(survivors(left))
    return pids


def stop_writers(datadir: str | os.PathLike[str], *, grace: float = 10.0) -> list[int]:
    """SIGTERM every writer of DATADIR, SIGKILL what is left after ``grace`` seconds, and
    return only once none is alive. Returns the PIDs that were stopped."""
    found = writers_of(datadir)
    if found:
        log.warning("pg.orphans.stopping", datadir=str(datadir), pids=found)
    return _stop(lambda: writers_of(datadir), signal.SIGTERM, grace,
                 lambda left: f"processes {left} still write into {datadir} after SIGKILL; stop them by hand, then resume")
