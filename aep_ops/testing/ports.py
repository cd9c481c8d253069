"""The one allocator of TCP ports for test services (PostgreSQL, moto, nginx, the CLI's source).

A port from ``bind(("127.0.0.1", 0))`` is an *ephemeral* port: any outgoing connection on the
machine may be given it as its local port between the moment a test reads it and the moment
PostgreSQL binds it, and the cluster then fails to start. So ports come from outside
/proc/sys/net/ipv4/ip_local_port_range, where the kernel never auto-assigns one. Each is
reserved with an fcntl lock file under /tmp held for the life of this process (two pytest
sessions on one machine never take the same port; the lock goes away with the process, even
after a SIGKILL) and checked free by bind, on 127.0.0.1 and ::1, before it is handed out.
A port is never handed out twice in one process. Lowest first: the servers aep-ops itself
starts (restored copies, aep_ops/base/netports.py) take theirs from the top.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from aep_ops.base.netports import EPHEMERAL_RANGE_FILE, LOWEST, bindable, ephemeral_range, non_ephemeral_ports

LOCK_DIR = Path("/tmp/aep-ops-test-ports")
__all__ = ["bindable", "candidate_ports", "claim", "ephemeral_range", "free_port"]

_held: dict[str, int] = {}  # lock name -> fd of its lock file, open until this process exits
_lock = threading.Lock()


def candidate_ports() -> list[int]:
    """Every port the allocator may hand out: from LOWEST to 65535, minus the ephemeral range."""
    ports = non_ephemeral_ports()
    if not ports:
        low, high = ephemeral_range()
        raise RuntimeError(f"no test ports: the ephemeral range {low}-{high} ({EPHEMERAL_RANGE_FILE}) covers "
                           f"{LOWEST}-65535; narrow it, e.g. sysctl net.ipv4.ip_local_port_range='32768 60999'")
    return ports


def free_port() -> int:
    """A port outside the ephemeral range, reserved for this process, free on 127.0.0.1 and ::1."""
    ports = candidate_ports()
    for port in ports:  # lowest first: a few lock files, reused by later sessions, not one per port
        if claim("port", port):
            return port
    raise RuntimeError(f"no free test port in {ports[0]}-{ports[-1]} outside the ephemeral range"
                       f" (locks under {LOCK_DIR})")


def claim(kind: str, port: int, address: str | None = None) -> bool:
    """Reserve ``port`` (on ``address`` when given, e.g. an sshd's own loopback address) for this
    process: True if its lock was free and the port binds now; the lock stays held."""
    name = f"{kind}-{address}-{port}" if address else f"{kind}-{port}"
    with _lock:
        if name in _held:
            return False
        fd = _try_lock(name)
        if fd is None:
            return False
        addresses = [address] if address else ["127.0.0.1", "::1"]
        if not all(bindable(a, port) for a in addresses):
            os.close(fd)  # someone outside our locks uses it: leave it to them
            return False
        _held[name] = fd
        return True


def _try_lock(name: str) -> int | None:
    if not LOCK_DIR.is_dir():
        LOCK_DIR.mkdir(exist_ok=True)
        LOCK_DIR.chmod(0o1777)  # shared by every user's sessions, like /tmp
    fd = os.open(LOCK_DIR / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
