"""Which hosts hold a source's files, and how to reach each: over SSH through the fleet's
inventory, or this machine itself for role ``local`` (aep-ops's own log and audit log)."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

from aep_ops.logs.settings import Source

SAFE_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


@dataclass(frozen=True)
class LogHost:
    """One host of a role, as logs sees it; ``host`` is None for this machine."""

    name: str
    role: str
    host: Any = None  # aep_ops.fleet.inventory.Host

    @property
    def local(self) -> bool:
        return self.host is None


def local_name() -> str:
    """This machine's name in S3 keys (its hostname, or ``localhost`` when that is not key-safe)."""
    name = socket.gethostname().split(".", 1)[0]
    return name if SAFE_HOST.fullmatch(name) else "localhost"


def hosts_of(settings: Any, role: str) -> list[LogHost]:
    from aep_ops.fleet.inventory import hosts_for
    from aep_ops.logs.settings import LOCAL_ROLE

    if role == LOCAL_ROLE:
        return [LogHost(local_name(), role)]
    return [LogHost(h.name, role, h) for h in hosts_for(settings, role=role)]


def by_host(settings: Any, chosen: list[Source]) -> list[tuple[LogHost, list[Source]]]:
    """Each host once with the sources whose files it holds, in inventory order."""
    out: list[tuple[LogHost, list[Source]]] = []
    for role in dict.fromkeys(s.role for s in chosen):
        for host in hosts_of(settings, role):
            out.append((host, [s for s in chosen if s.role == role]))
    return out


def connect(settings: Any, host: LogHost) -> Any:
    """An executor for the host (close it after use)."""
    if host.local:
        from aep_ops.executors.local import LocalExecutor

        return LocalExecutor()
    from aep_ops.fleet.inventory import executor_for

    return executor_for(settings, host.host)
