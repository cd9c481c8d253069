"""Read-only probes of what a PostgreSQL server is doing now (facts, in pyinfra's sense): its
sessions with the PIDs blocking each, connection use, database counters (cache hits, deadlocks,
transaction ID age), a standby's replay delay and the top statements of pg_stat_statements
(replication lag as a primary sees it is ``aep_ops.db.migrate_facts.replication_lag``).

Each function takes an open connection, runs one query (the SQL is a constant beside it) and
returns typed rows. Values are bound parameters; nothing is formatted into SQL. Query texts of
other sessions are returned as the server has them: render them with ``shown_query`` (redacted,
cut short) before they leave the process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from aep_ops.pg.connect import wrap_errors

if TYPE_CHECKING:
    import psycopg

WRAPAROUND = 2 ** 31
IDLE_IN_TRANSACTION = ("idle in transaction", "idle in transaction (aborted)")
QUERY_CHARS = 200

SESSIONS_SQL = """
select a.pid, a.backend_start, a.usename, a.application_name, a.client_addr::text, a.datname, a.state,
       a.xact_start, a.query_start, a.state_change, a.wait_event_type, a.wait_event, a.query,
       pg_blocking_pids(a.pid),
       extract(epoch from now() - a.xact_start)::float8,
       extract(epoch from now() - a.query_start)::float8,
       extract(epoch from now() - a.state_change)::float8,
       (select extract(epoch from now() - min(l.waitstart))::float8 from pg_locks l
         where l.pid = a.pid and not l.granted)
  from pg_stat_activity a
 where a.backend_type = 'client backend' and a.pid <> pg_backend_pid()
 order by a.backend_start, a.pid
"""

CONNECTIONS_SQL = """
select (select count(*) from pg_stat_activity where backend_type = 'client backend')::int,
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int
"""

DATABASES_SQL = """
select d.datname, coalesce(s.blks_hit, 0)::bigint, coalesce(s.blks_read, 0)::bigint,
       coalesce(s.deadlocks, 0)::bigint, s.stats_reset, age(d.datfrozenxid)::bigint
  from pg_database d left join pg_stat_database s on s.datid = d.oid
 where d.datallowconn
 order by d.datname
"""

BACKEND_TYPE_SQL = "select backend_type from pg_stat_activity where pid = %(pid)s"

FREEZE_MAX_AGE_SQL = "select current_setting('autovacuum_freeze_max_age')::bigint"

STANDBY_DELAY_SQL = """
select pg_is_in_recovery(),
       case when pg_is_in_recovery() then
         coalesce(extract(epoch from now() - pg_last_xact_replay_timestamp()), 0)::float8 end
"""

HAS_STATEMENTS_SQL = "select to_regclass('pg_stat_statements') is not null"

TOP_STATEMENTS_SQL = """
select queryid, calls, total_exec_time::float8, mean_exec_time::float8, rows, query
  from pg_stat_statements order by total_exec_time desc limit %(limit)s
"""

_PASSWORD_LITERAL = re.compile(r"(password\s*(=\s*)?)'(?:[^']|'')*'", re.IGNORECASE)


@dataclass(frozen=True)
class SessionRow:
    """One client backend of ``pg_stat_activity`` (ours excluded), with whom it waits for."""

    pid: int
    backend_start: datetime
    user: str | None
    application: str | None
    client: str | None
    database: str | None
    state: str | None
    xact_start: datetime | None
    query_start: datetime | None
    state_change: datetime | None
    wait_event_type: str | None
    wait_event: str | None
    query: str
    blocking_pids: tuple[int, ...]
    xact_seconds: float | None
    query_seconds: float | None
    state_seconds: float | None
    lock_wait_seconds: float | None  # since pg_locks.waitstart of its ungranted lock

    @property
    def idle_in_transaction(self) -> bool:
        return self.state in IDLE_IN_TRANSACTION

    @property
    def active(self) -> bool:
        return self.state == "active"

    def key(self) -> tuple[int, datetime]:
        """What identifies a backend: a PID alone is reused once the backend exits."""
        return (self.pid, self.backend_start)


@dataclass(frozen=True)
class ConnectionUsage:
    client_backends: int
    max_connections: int
    superuser_reserved: int

    @property
    def available(self) -> int:
        """Slots ordinary users can take (max_connections minus the superusers' reserve)."""
        return max(self.max_connections - self.superuser_reserved, 1)

    @property
    def percent(self) -> float:
        return 100.0 * self.client_backends / self.available


@dataclass(frozen=True)
class DatabaseStats:
    name: str
    blks_hit: int
    blks_read: int
    deadlocks: int
    stats_reset: datetime | None
    xid_age: int

    @property
    def cache_hit_ratio(self) -> float | None:
        total = self.blks_hit + self.blks_read
        return self.blks_hit / total if total else None


@dataclass(frozen=True)
class StandbyDelay:
    in_recovery: bool
    replay_delay_seconds: float | None


@dataclass(frozen=True)
class Statement:
    queryid: int | None
    calls: int
    total_ms: float
    mean_ms: float
    rows: int
    query: str


def sessions(conn: psycopg.Connection) -> list[SessionRow]:
    """Every other client backend, oldest first, with ``pg_blocking_pids`` of each."""
    with wrap_errors("reading pg_stat_activity", conn):
        rows = conn.execute(SESSIONS_SQL).fetchall()
    return [SessionRow(*r[:12], r[12] or "", tuple(r[13] or ()), *r[14:]) for r in rows]


def backend_type(conn: psycopg.Connection, pid: int) -> str | None:
    """What runs at ``pid`` (client backend, autovacuum worker, walsender ...); None: nothing."""
    with wrap_errors("reading pg_stat_activity", conn):
        row = conn.execute(BACKEND_TYPE_SQL, {"pid": pid}).fetchone()
    return row[0] if row else None


def connection_usage(conn: psycopg.Connection) -> ConnectionUsage:
    with wrap_errors("counting connections in pg_stat_activity", conn):
        return ConnectionUsage(*conn.execute(CONNECTIONS_SQL).fetchone())


def database_stats(conn: psycopg.Connection) -> list[DatabaseStats]:
    """Per database: cache hits and reads, deadlocks since the stats reset, age(datfrozenxid)."""
    with wrap_errors("reading pg_stat_database", conn):
        return [DatabaseStats(*r) for r in conn.execute(DATABASES_SQL).fetchall()]


def freeze_max_age(conn: psycopg.Connection) -> int:
    with wrap_errors("reading autovacuum_freeze_max_age", conn):
        return int(conn.execute(FREEZE_MAX_AGE_SQL).fetchone()[0])


def standby_delay(conn: psycopg.Connection) -> StandbyDelay:
    """On a standby: seconds since the last replayed commit (None on a primary)."""
    with wrap_errors("reading pg_last_xact_replay_timestamp()", conn):
        return StandbyDelay(*conn.execute(STANDBY_DELAY_SQL).fetchone())


def top_statements(conn: psycopg.Connection, limit: int = 5) -> list[Statement] | None:
    """The statements with the most total execution time; None when pg_stat_statements is not
    installed in this database."""
    with wrap_errors("reading pg_stat_statements", conn):
        if not conn.execute(HAS_STATEMENTS_SQL).fetchone()[0]:
            return None
        rows = conn.execute(TOP_STATEMENTS_SQL, {"limit": int(limit)}).fetchall()
    return [Statement(*r[:5], r[5] or "") for r in rows]


def iso(moment: datetime) -> str:
    """A backend_start as the CLI takes it back: UTC, microseconds kept (they tell reused PIDs apart)."""
    return moment.astimezone(timezone.utc).isoformat()


def shown_query(text: str | None, limit: int = QUERY_CHARS) -> str:
    """A query text fit to leave the process: registered secrets and password literals masked,
    whitespace folded, cut to ``limit`` characters."""
    from aep_ops.base.redact import redact

    folded = " ".join((text or "").split())
    masked = redact(_PASSWORD_LITERAL.sub(r"\1'****'", folded))
    return masked if len(masked) <= limit else masked[: max(limit - 1, 0)] + "…"
