"""Run commands on this machine: argv lists, deadlines, no shell."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import time
from typing import Mapping, Sequence

from aep_ops.errors import CommandTimeout, ExecutionError, ToolMissing
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
            proc = subprocess.run(
                full,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=run_env,
                cwd=cwd,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"localhost: `{argv[0]}` did not finish within {timeout:g}s and was stopped") from exc
        except FileNotFoundError as exc:
            raise ToolMissing(f"`{full[0]}` is not installed (needed to run `{argv[0]}`)") from exc
        return CommandResult(
            target=self.target,
            argv=tuple(argv),
            exit_status=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            duration=time.monotonic() - started,
        )

    def close(self) -> None:
        """Nothing to release; present for the Executor interface."""


def as_user(argv: Sequence[str], user: str | None) -> list[str]:
    """Prefix argv so it runs as ``user`` (no-op when that is already who we are)."""
    argv = list(argv)
    if user is None or user == getpass.getuser():
        return argv
    if os.geteuid() != 0:
        raise ExecutionError(f"cannot run `{argv[0]}` as {user}: aep-ops is not running as root")
    return ["runuser", "-u", user, "--", *argv]
