"""One command over SSH on many inventory hosts: executors from the environment's SSH
settings, then ``executors.fleet.run_on_all`` (bounded pool, one global deadline). Shared by
``fleet.run`` (actions, commands.py) and ``fleet.facts`` (read-only, facts.py)."""

from __future__ import annotations

from typing import Any, Sequence

from aep_ops.base.errors import UsageError
from aep_ops.executors.base import FleetResult
from aep_ops.fleet.inventory import Host, executor_for


def run_ssh(settings: Any, targets: list[Host], argv: list[str] | None, *, identity: str | None,
            known_hosts: str | None, parallel: int, timeout: float, shell: str | None = None) -> FleetResult:
    """argv (quoted for the remote shell) or ``shell``, a command line sent as typed."""
    from aep_ops.executors.fleet import run_on_all

    if timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {timeout:g}")
    executors = [executor_for(settings, h, identity=identity, known_hosts=known_hosts) for h in targets]
    for ex in executors:  # a connect may not outlive the run's deadline
        ex.connect_timeout = min(ex.connect_timeout, timeout)
    runners = executors if shell is None else [_AsTyped(ex, shell) for ex in executors]
    try:
        return run_on_all(runners, argv or [shell or ""], parallel=parallel, timeout=timeout)
    finally:
        for ex in executors:
            ex.close()


class _AsTyped:
    """Adapter for run_on_all (which passes argv): sends the user's command line unquoted."""

    def __init__(self, executor: Any, command: str) -> None:
        self.executor, self.command, self.target = executor, command, executor.target

    def run(self, argv: Sequence[str], *, timeout: float | None = None, **_: Any) -> Any:
        return self.executor.run_shell(self.command, timeout=timeout)

    def close(self) -> None:
        self.executor.close()
