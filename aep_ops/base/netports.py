"""Ports for the servers aep-ops starts on this host (restored copies of the database).

A port from ``bind(("127.0.0.1", 0))`` is an *ephemeral* port: the kernel hands the same range to
outgoing connections (pgBackRest's to S3, psql's, the application's), and one of them may hold
it as its local port when PostgreSQL binds it, minutes later, after the restore. So a copy's
port comes from outside /proc/sys/net/ipv4/ip_local_port_range, from the top of what is left
(the test allocator, aep_ops/testing/ports.py, takes from the bottom), at random among those free
now; and a start that still finds it taken moves to another (``PORT_TAKEN``).
"""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
from pathlib import Path
from typing import Iterable

LOWEST = 10000  # below: well-known and registered services more often listen
SERVER_POOL = 4096  # the highest this many non-ephemeral ports are where copies go
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOOPBACKS = ("127.0.0.1", "::1")
# What PostgreSQL 15 says when its port is taken: pg_ctl's error carries the WARNING and FATAL
# lines ("could not bind ... Address already in use" is only logged before them).
PORT_TAKEN = ("could not create any TCP/IP sockets", "could not bind", "already in use")


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for auto-assigned local ports (Linux's default when unreadable)."""
    try:
        low, high = EPHEMERAL_RANGE_FILE.read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def non_ephemeral_ports() -> list[int]:
    """LOWEST..65535 minus the ephemeral range, lowest first (empty if the range covers it all)."""
    low, high = ephemeral_range()
    return [p for p in range(LOWEST, 65536) if not low <= p <= high]


def bindable(address: str, port: int) -> bool:
    """Whether ``address:port`` can be bound right now (no SO_REUSEADDR: a TIME_WAIT counts as
    taken). An address this host lacks (no IPv6 loopback) counts as free."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return True
    with sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                return True
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_on_loopback(port: int) -> bool:
    return all(bindable(address, port) for address in LOOPBACKS)


def server_port(avoid: Iterable[int] = ()) -> int:
    """A port for a server of ours, free on both loopbacks now, not one of ``avoid`` (ports other
    copies recorded: they may be stopped, not gone). Random within the pool, so two restores
    choosing at the same moment rarely meet; when they do, the start moves (``PORT_TAKEN``)."""
    avoid = set(avoid)
    pool = [p for p in non_ephemeral_ports()[-SERVER_POOL:] if p not in avoid]
    random.shuffle(pool)
    for port in pool:
        if free_on_loopback(port):
            return port
    for _ in range(20):  # the ephemeral range covers every port above LOWEST: the kernel's choice
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid and free_on_loopback(port):
            return port
    raise OSError(errno.EADDRINUSE, "no free TCP port for the restored copy on 127.0.0.1")


def port_taken(message: str) -> bool:
    """Whether a failed server start says its port was taken."""
    return any(sign in message for sign in PORT_TAKEN)


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address, not a name (which would need a DNS lookup or an SNI)."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False
