"""Run commands on this machine: argv lists, deadlines, no shell."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import subprocess
import time
from typing import Mapping, Sequence

from aep_ops.base import processes
from aep_ops.base.errors import CommandTimeout, ExecutionError, ToolMissing
from aep_ops.executors.base import CommandResult


class LocalExecutor:
    """Executor for this machine. ``user=`` runs the command as another OS user via runuser
    (PostgreSQL's tools refuse to run as root)."""

    target = "localhost"

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        argv = [str(a) for a in argv]
        if not argv:
            raise ExecutionError("empty command")
        full = as_user(argv, user)
        if shutil.which(full[0]) is None and not os.path.isabs(full[0]):
            raise ToolMissing(f"`{full[0]}` is not installed or not on PATH (needed to run `{argv[0]}`)")
        run_env = None if env is None else {**os.environ, **env}
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",  # as the SSH executor: a stray byte never fails a command that ran
                env=run_env,
                cwd=cwd,
                process_group=0,  # so a deadline or an interrupt stops its children too
            )
        except FileNotFoundError as exc:
            raise ToolMissing(f"`{full[0]}` is not installed (needed to run `{argv[0]}`)") from exc
        try:
            stdout, stderr = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            _stop_group(proc)
            raise CommandTimeout(f"localhost: `{argv[0]}` did not finish within {timeout:g}s and was stopped") from exc
        except BaseException:  # Ctrl-C, SIGTERM turned into an exception: leave nothing running
            _stop_group(proc)
            raise
        return CommandResult(
            target=self.target,
            argv=tuple(argv),
            exit_status=proc.returncode,
            stdout=stdout,
            stderr=stderr,
            duration=time.monotonic() - started,
        )

    def close(self) -> None:
        """Nothing to release; present for the Executor interface."""


def _stop_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the command's process group (runuser passes it on to its child), SIGKILL what is
    left after ``grace``; return once none of the group runs. The leader exiting is not enough:
    its children (pgBackRest's workers, a shell's background job) may still be on their way out."""
    def left() -> list[int]:
        proc.poll()  # reap the leader as soon as it exits
        return processes.in_group(proc.pid)

    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            break
        if not processes.wait_gone(left, grace):
            break
    proc.wait()


def as_user(argv: Sequence[str], user: str | None) -> list[str]:
    """Prefix argv so it runs as ``user`` (no-op when that is already who we are)."""
    argv = list(argv)
    if user is None or user == getpass.getuser():
        return argv
    if os.geteuid() != 0:
        raise ExecutionError(f"cannot run `{argv[0]}` as {user}: aep-ops is not running as root")
    return ["runuser", "-u", user, "--", *argv]
