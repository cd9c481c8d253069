"""One run at a time per runbook and environment, whichever front door starts it.

Both kinds of lock are released by the operating system or the database when their
holder dies (``flock`` on a file; a session-level advisory lock on PostgreSQL), so a
crashed run can never wedge the next one. The holder's identity (run, pid, host, since)
is written beside the lock so that the loser can say who holds it, and so that the
next winner can tell it took over from a dead run. Model: Barman's lockfile.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from aep_ops.base.errors import LockedError
from aep_ops.engine.journal import now_iso


@dataclass(frozen=True)
class Holder:
    run_id: str
    pid: int
    host: str
    since: str

    @classmethod
    def me(cls, run_id: str) -> "Holder":
        return cls(run_id=run_id, pid=os.getpid(), host=socket.gethostname(), since=now_iso())

    def describe(self) -> str:
        return f"run {self.run_id} (pid {self.pid} on {self.host}, since {self.since})"


class FileLock:
    """``flock`` on STATE_DIR/locks/<key>.lock; the file holds the holder as JSON."""

    def __init__(self, lock_dir: Path, key: str) -> None:
        self.key = key
        self.path = Path(lock_dir) / (key.replace("/", "_") + ".lock")
        self._fd: int | None = None
        self.stale: Holder | None = None  # the dead holder we took over from, if any

    def acquire(self, holder: Holder) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = _wait_for_holder(lambda: _read_holder(fd))
            os.close(fd)
            raise _locked(self.key, current) from None
        # We hold the lock. Leftover holder data means its owner died without releasing.
        self.stale = _read_holder(fd)
        data = json.dumps(asdict(holder)).encode()
        os.pwrite(fd, data, 0)  # overwrite, then trim: a reader never sees an empty file here
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        self._fd = fd

    def current_holder(self) -> Holder | None:
        """Who holds the lock now (None when nobody does): takes it for an instant when free, so a
        holder that died is never reported as holding it. A second open file of this process
        does not share the flock, so a run probing its own lock sees itself."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _wait_for_holder(lambda: _read_holder(fd)) or Holder("unknown", 0, "unknown", "")
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


class AdvisoryLock:
    """``pg_try_advisory_lock`` held by a dedicated session for the whole run (shared journal)."""

    def __init__(self, dsn: str, key: str) -> None:
        self.key = key
        self.dsn = dsn
        self._conn: Any = None
        self.stale: Holder | None = None

    def acquire(self, holder: Holder) -> None:
        import psycopg

        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
        conn.execute("CREATE SCHEMA IF NOT EXISTS aep_ops")
        conn.execute("CREATE TABLE IF NOT EXISTS aep_ops.lock_holders (key TEXT PRIMARY KEY, holder TEXT NOT NULL)")
        got = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (f"aep-ops:{self.key}",)).fetchone()[0]
        if not got:
            current = _wait_for_holder(lambda: self._holder_row(conn))
            conn.close()
            raise _locked(self.key, current)
        self.stale = self._holder_row(conn)
        conn.execute("INSERT INTO aep_ops.lock_holders (key, holder) VALUES (%s, %s)"
                     " ON CONFLICT (key) DO UPDATE SET holder = EXCLUDED.holder",
                     (self.key, json.dumps(asdict(holder))))
        self._conn = conn

    def current_holder(self) -> Holder | None:
        """Who holds the lock now (None when nobody does), probed from a session of its own."""
        import psycopg

        lock_key = f"aep-ops:{self.key}"
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (lock_key,)).fetchone()[0]:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (lock_key,))
                return None
            conn.execute("CREATE SCHEMA IF NOT EXISTS aep_ops")
            conn.execute("CREATE TABLE IF NOT EXISTS aep_ops.lock_holders (key TEXT PRIMARY KEY, holder TEXT NOT NULL)")
            return _wait_for_holder(lambda: self._holder_row(conn)) or Holder("unknown", 0, "unknown", "")

    def _holder_row(self, conn: Any) -> Holder | None:
        row = conn.execute("SELECT holder FROM aep_ops.lock_holders WHERE key = %s", (self.key,)).fetchone()
        return Holder(**json.loads(row[0])) if row else None

    def release(self) -> None:
        if self._conn is None:
            return
        self._conn.execute("DELETE FROM aep_ops.lock_holders WHERE key = %s", (self.key,))
        self._conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (f"aep-ops:{self.key}",))
        self._conn.close()
        self._conn = None


def _wait_for_holder(read: Callable[[], Holder | None], patience: float = 1.0) -> Holder | None:
    """The winner writes its identity just after taking the lock: give it a moment."""
    deadline = time.monotonic() + patience
    while True:
        current = read()
        if current is not None or time.monotonic() >= deadline:
            return current
        time.sleep(0.02)


def _locked(key: str, current: Holder | None) -> LockedError:
    who = current.describe() if current else "another run"
    return LockedError(f"{key} is locked by {who}; wait for it to finish, or inspect it with"
                       f" `inv runs.show {current.run_id if current else 'RUN_ID'}`")


def _read_holder(fd: int) -> Holder | None:
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return None
    try:
        return Holder(**json.loads(raw))
    except (ValueError, TypeError):
        return None
