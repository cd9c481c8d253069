"""The PostgreSQL source of ``incident.diagnose``: sessions and the lock tree, connections,
database counters, replication, the archiver and the top statements, read within a deadline and
turned into findings (rules in aep_ops.incident.postgres_rules).

The deadline holds even when the server hangs: the connection gets ``connect_timeout`` (at most
the deadline; libpq waits at least 2 s) and a session ``statement_timeout``, and a timer fires
at the deadline that cancels the running query and shuts the socket down, so the blocked call
returns at once. A query that fails or is cancelled leaves the others' results: status partial.
The timer is joined before returning: no thread is left behind.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable

from aep_ops.base.log import get_logger
from aep_ops.base.redact import redact
from aep_ops.incident import locktree
from aep_ops.incident.model import ERROR, OK, PARTIAL, TIMEOUT, SourceResult
from aep_ops.incident.postgres_rules import (SOURCE, PostgresFacts, PostgresThresholds, findings, iso,  # noqa: F401
                                             session_line)
from aep_ops.pg.activity import shown_query
from aep_ops.pg.connect import describe_target

log = get_logger(__name__)

APPLICATION_NAME = "aep-ops-diagnose"
CANCEL_WAIT = 0.5  # seconds the deadline timer gives the server to take a cancel request


def collect_postgres(params: dict, *, deadline: float, thresholds: PostgresThresholds, env_name: str,
                     since_seconds: float) -> SourceResult:
    """Read the server ``params`` points at (libpq keywords, password resolved) for at most
    ``deadline`` seconds; findings ranked by the caller."""
    started = time.monotonic()
    result = SourceResult(SOURCE, data={"since_seconds": since_seconds})
    where = describe_target(params)
    facts = PostgresFacts()
    watchdog = _Watchdog(deadline)
    try:
        try:
            conn = _connect(params, deadline, thresholds.query_timeout_ms)
        except Exception as exc:  # noqa: BLE001 - every failure to connect is this source's answer
            timed_out = "timeout" in str(exc).lower() or time.monotonic() - started >= deadline
            result.status = TIMEOUT if timed_out else ERROR
            result.error = redact(f"cannot connect to PostgreSQL {where}: {_first_line(exc)}")
            return result
        watchdog.watch(conn, started)
        try:
            failures = _read_all(conn, facts, thresholds, result, watchdog)
        finally:
            watchdog.stop()
            conn.close()
        read_any = any(v is not None for v in vars(facts).values())
        if watchdog.fired.is_set():
            failures.insert(0, f"deadline of {deadline:g} s reached: the running query was cancelled")
            result.status = PARTIAL if read_any else TIMEOUT
        elif failures:
            result.status = PARTIAL if read_any else ERROR
        else:
            result.status = OK
        result.error = redact("; ".join(failures)) if failures else None
        result.findings = findings(facts, thresholds, env_name, where)
        return result
    finally:
        watchdog.stop()
        result.elapsed = time.monotonic() - started
        log.info("incident.postgres.done", status=result.status, elapsed=round(result.elapsed, 3),
                 findings=len(result.findings))


def _read_all(conn: Any, facts: PostgresFacts, t: PostgresThresholds, result: SourceResult,
              watchdog: "_Watchdog") -> list[str]:
    from aep_ops.db import migrate_facts
    from aep_ops.pg import activity, facts as pg_facts

    def sessions() -> None:
        facts.sessions = activity.sessions(conn)
        facts.forest = locktree.build(locktree.Waiter(s.pid, s.blocking_pids, s.lock_wait_seconds or 0.0)
                                      for s in facts.sessions)
        result.data["sessions"] = [_session_json(s) for s in facts.sessions]
        result.data["lock_tree"] = [r.to_json() for r in facts.forest]
        result.raw["pg_stat_activity"] = "\n".join(_session_text(s) for s in facts.sessions)
        result.raw["lock_tree"] = locktree.render(facts.forest, {s.pid: session_line(s) for s in facts.sessions})

    def connections() -> None:
        facts.connections = c = activity.connection_usage(conn)
        result.data["connections"] = {"client_backends": c.client_backends, "max_connections": c.max_connections,
                                      "superuser_reserved": c.superuser_reserved, "percent": round(c.percent, 1)}
        result.raw["connections"] = f"{c.client_backends} client backends; max_connections {c.max_connections};" \
                                    f" superuser_reserved_connections {c.superuser_reserved}"

    def databases() -> None:
        facts.databases = rows = activity.database_stats(conn)
        result.data["databases"] = [{"name": d.name, "cache_hit_ratio": d.cache_hit_ratio, "deadlocks": d.deadlocks,
                                     "xid_age": d.xid_age} for d in rows]
        result.raw["pg_stat_database"] = "\n".join(
            f"{d.name}\tblks_hit={d.blks_hit}\tblks_read={d.blks_read}\tdeadlocks={d.deadlocks}\txid_age={d.xid_age}"
            f"\tstats_reset={d.stats_reset}" for d in rows)

    def freeze() -> None:
        facts.freeze_max_age = activity.freeze_max_age(conn)
        result.data["autovacuum_freeze_max_age"] = facts.freeze_max_age

    def replication() -> None:
        facts.replication = migrate_facts.replication_lag(conn)
        facts.standby = activity.standby_delay(conn)
        result.data["replication"] = {"standbys": facts.replication, "in_recovery": facts.standby.in_recovery,
                                      "replay_delay_seconds": facts.standby.replay_delay_seconds}
        result.raw["pg_stat_replication"] = "\n".join(f"{k}\t{v:.1f} s" for k, v in facts.replication.items())

    def archiver() -> None:
        facts.archiver = a = pg_facts.archiver_status(conn)
        result.data["archiver"] = {"failing": a.failing, "failed_count": a.failed_count,
                                   "last_archived_wal": a.last_archived_wal, "last_failed_wal": a.last_failed_wal}
        result.raw["pg_stat_archiver"] = repr(a)

    def statements() -> None:
        if not t.top_statements:
            return
        facts.statements = rows = activity.top_statements(conn, t.top_statements)
        result.data["statements_installed"] = rows is not None
        if rows:
            result.raw["pg_stat_statements"] = "\n".join(
                f"{s.calls}\t{s.total_ms:.1f} ms\t{s.mean_ms:.3f} ms\t{shown_query(s.query)}" for s in rows)

    reads: list[tuple[str, Callable[[], None]]] = [
        ("sessions", sessions), ("connections", connections), ("databases", databases),
        ("autovacuum_freeze_max_age", freeze), ("replication", replication), ("archiver", archiver),
        ("pg_stat_statements", statements)]
    failures: list[str] = []
    for name, read in reads:
        if watchdog.fired.is_set():
            failures.append(f"{name}: not read (deadline)")
            continue
        try:
            read()
        except Exception as exc:  # noqa: BLE001 - one failed read leaves the others
            failures.append(f"{name}: cancelled at the deadline" if watchdog.fired.is_set()
                            else f"{name}: {_first_line(exc)}")
            log.warning("incident.postgres.read_failed", read=name, error=redact(_first_line(exc)))
    return failures


def _connect(params: dict, deadline: float, query_timeout_ms: int) -> Any:
    import psycopg

    from aep_ops.base import redact as redaction

    kwargs = dict(params)
    if kwargs.get("password"):
        redaction.register(str(kwargs["password"]))
    statement_ms = max(1, min(int(query_timeout_ms), int(deadline * 1000)))
    kwargs["options"] = f"{kwargs.get('options') or ''} -c statement_timeout={statement_ms}".strip()
    kwargs.setdefault("application_name", APPLICATION_NAME)
    kwargs["connect_timeout"] = max(1, int(deadline))
    return psycopg.connect(**kwargs, autocommit=True)


class _Watchdog:
    """At the deadline: cancel the running query, then shut the socket down so that a server that
    does not answer cannot keep the caller waiting."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = threading.Event()
        self._timer: threading.Timer | None = None
        self._conn: Any = None

    def watch(self, conn: Any, started: float) -> None:
        self._conn = conn
        remaining = max(self.deadline - (time.monotonic() - started), 0.0)
        self._timer = threading.Timer(remaining, self._fire)
        self._timer.daemon = True
        self._timer.name = "aep-ops-postgres-deadline"
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            if self._timer is not threading.current_thread():
                self._timer.join()
            self._timer = None

    def _fire(self) -> None:
        self.fired.set()
        conn = self._conn
        log.warning("incident.postgres.deadline", deadline=self.deadline)
        try:
            conn.cancel_safe(timeout=CANCEL_WAIT)
        except Exception:  # noqa: BLE001 - a hung server will not take the cancel either: the socket goes
            pass
        try:
            fd = conn.pgconn.socket
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - already closed: nothing waits on it
            pass


def _session_json(s: Any) -> dict[str, Any]:
    return {"pid": s.pid, "backend_start": iso(s.backend_start), "user": s.user, "application": s.application,
            "client": s.client, "database": s.database, "state": s.state, "wait_event_type": s.wait_event_type,
            "wait_event": s.wait_event, "blocking_pids": list(s.blocking_pids), "xact_seconds": s.xact_seconds,
            "query_seconds": s.query_seconds, "state_seconds": s.state_seconds,
            "lock_wait_seconds": s.lock_wait_seconds, "query": shown_query(s.query)}


def _session_text(s: Any) -> str:
    def secs(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    return (f"{s.pid}\t{iso(s.backend_start)}\t{s.user}\t{s.application or '-'}\t{s.state}\txact={secs(s.xact_seconds)}"
            f"\tquery={secs(s.query_seconds)}\twait={s.wait_event_type or '-'}:{s.wait_event or '-'}"
            f"\tblocked_by={list(s.blocking_pids)}\t{shown_query(s.query)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
