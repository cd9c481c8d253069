"""The watcher beside a running migration: it cancels the migration when writers queue behind
it longer than ``max_queue_ms``, and samples the locks it takes and who blocks it.

Why a thread with its own connection: the migration's session is busy (waiting for a lock or
running DDL) and cannot look at itself. A lock_timeout bounds how long the migration waits
for a lock; it does not bound how long others wait for a lock the migration already holds
(a slow ALTER TABLE rewriting a big table): that is what this watcher is for.
"""

from __future__ import annotations

import threading
from typing import Any

from aep_ops.base.log import get_logger
from aep_ops.db import migrate_facts as facts

log = get_logger(__name__)
POLL_SECONDS = 0.05


class QueueWatcher(threading.Thread):
    """``with QueueWatcher(params, tag, max_queue_ms): ...`` around one migration attempt."""

    def __init__(self, conn_params: Any, tag: str, max_queue_ms: int) -> None:
        super().__init__(name=f"migrate-watch-{tag}", daemon=True)
        self.conn_params = conn_params
        self.tag = tag
        self.max_queue_ms = max_queue_ms
        self.locks: set[tuple[str, str]] = set()
        self.blockers: dict[int, facts.Session] = {}  # who the migration waited for, last seen
        self.max_queued_ms = 0.0
        self.cancelled: list[facts.Session] = []  # the queue that made it cancel the migration
        self.error: str | None = None
        self._halt = threading.Event()
        self._ready = threading.Event()

    def __enter__(self) -> "QueueWatcher":
        self.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        from aep_ops.pg.connect import connect

        try:
            conn = connect(self.conn_params, application_name="aep-ops-migrate-watch", statement_timeout_ms=5000)
        except Exception as exc:  # noqa: BLE001 - without a watcher the migration still has its lock_timeout
            self.error = str(exc)
            log.warning("migrate.watch.unavailable", error=str(exc))
            self._ready.set()
            return
        self._ready.set()
        try:
            with conn:
                while not self._halt.is_set():
                    self._poll(conn)
                    self._halt.wait(POLL_SECONDS)
        except Exception as exc:  # noqa: BLE001 - reported with the migration's outcome
            self.error = str(exc)
            log.warning("migrate.watch.failed", error=str(exc))

    def _poll(self, conn: Any) -> None:
        self.locks |= facts.relation_locks(conn, self.tag)
        for session in facts.blockers_of(conn, self.tag):
            self.blockers[session.pid] = session
        queued = facts.queued_behind(conn, self.tag)
        if not queued:
            return
        longest = max(s.seconds for s in queued) * 1000
        self.max_queued_ms = max(self.max_queued_ms, longest)
        if longest > self.max_queue_ms and not self.cancelled:
            self.cancelled = queued
            pids = facts.migration_pids(conn, self.tag)
            log.warning("migrate.watch.cancel", queued=len(queued), longest_ms=round(longest), pids=pids)
            for pid in pids:
                conn.execute("select pg_cancel_backend(%s)", (pid,))

    def cancel_reason(self) -> str:
        longest = max(s.seconds for s in self.cancelled) * 1000
        return (f"cancelled by aep-ops: {len(self.cancelled)} session(s) queued behind the migration, the longest"
                f" {longest:.0f} ms (> migrate.max_queue_ms {self.max_queue_ms});"
                f" first: {self.cancelled[0].describe()}")

    def blocker_text(self) -> str:
        if not self.blockers:
            return ""
        return "; blocked by " + ", ".join(s.describe() for s in list(self.blockers.values())[:3])
