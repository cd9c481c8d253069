"""The one result type and interface shared by every executor (local, SSH, SSM).

Commands are argv lists, never shell strings built by interpolation: the SSH
executor quotes them with ``shlex.join`` for the remote shell. A command that runs and
exits non-zero is a result (``ok`` is False), not an exception; an exception means the
command could not be run or finished at all (unreachable host, host key refused, timeout).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence


@dataclass(frozen=True)
class CommandResult:
    """What happened when one command ran on one target."""

    target: str
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def stderr_tail(self, lines: int = 5) -> str:
        return "\n".join(self.stderr.strip().splitlines()[-lines:])

    def describe(self) -> str:
        """One line for error messages: where, what, how it ended."""
        tail = self.stderr_tail(1)
        return f"{self.target}: `{self.command}` exited {self.exit_status}" + (f": {tail}" if tail else "")


@dataclass(frozen=True)
class HostOutcome:
    """One host's outcome in a fan-out: ok, failed (ran, non-zero) or unreachable (error)."""

    target: str
    result: CommandResult | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "unreachable"
        return "ok" if self.result is not None and self.result.ok else "failed"


@dataclass(frozen=True)
class FleetResult:
    """Aggregated outcome of one command over many targets (model: fabric's GroupResult)."""

    outcomes: tuple[HostOutcome, ...] = field(default_factory=tuple)

    def by_status(self, status: str) -> list[HostOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def ok(self) -> bool:
        return all(o.status == "ok" for o in self.outcomes)


class Executor(Protocol):
    """Runs argv on one target. Fan-out (many targets) composes executors; see fleet.py."""

    target: str

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> CommandResult: ...

    def close(self) -> None: ...
