"""This machine's processes as /proc shows them: found by their arguments or their process group,
signalled, and waited for until gone. What a run starts can outlive the part of it that was
stopped: a pgBackRest restore its killed run, a shell's background job the shell."""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable, Iterable


def signal_each(pids: Iterable[int], signum: int) -> None:
    """Send ``signum`` to each of ``pids``; one that has already gone is no error."""
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def with_argv(match: Callable[[list[bytes]], bool]) -> list[int]:
    """PIDs (not this process's) whose argument vector ``match`` accepts; a zombie has none."""
    found = []
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if match(argv):
            found.append(pid)
    return found


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (state, ppid, pgrp, ...); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()  # the name may hold spaces and ')'
    except (OSError, IndexError):
        return None


def state(pid: int) -> str | None:
    """The process's state letter (R, S, D, T, Z...); None once it is gone."""
    fields = stat_fields(pid)
    return fields[0] if fields else None


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    return state(pid) not in (None, "Z")


def in_group(pgid: int) -> list[int]:
    """PIDs of the live (not zombie) members of process group ``pgid``."""
    found = []
    for pid in _pids():
        fields = stat_fields(pid)
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            found.append(pid)
    return found


def wait_gone(find: Callable[[], list[int]], timeout: float, poll: float = 0.02) -> list[int]:
    """Poll ``find`` until it finds nothing or ``timeout`` passes; what it found last."""
    deadline = time.monotonic() + timeout
    while (left := find()) and time.monotonic() < deadline:
        time.sleep(poll)
    return left


def stop(find: Callable[[], list[int]], first: int, grace: float) -> tuple[list[int], list[int]]:
    """Signal what ``find`` returns with ``first``, then SIGKILL what is left after ``grace``, and
    wait as long again: (the PIDs found at the start, those still alive at the end)."""
    pids = left = find()
    for signum in (first, signal.SIGKILL):
        if not left:
            break
        signal_each(left, signum)
        left = wait_gone(find, grace)
    return pids, left


def _pids() -> Iterable[int]:
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != me:
            yield int(entry.name)


def stop_child(process: Any, grace: float = 10.0) -> None:
    """SIGTERM a ``subprocess.Popen`` child, wait ``grace`` seconds, then SIGKILL and reap it:
    how the test services (nginx, pebble) are stopped."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)
