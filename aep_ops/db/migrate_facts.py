"""Read-only probes for ``db.migrate`` (facts, in pyinfra's sense): locks, long transactions,
replication lag, the restore point, sessions queued behind the migration, invalid indexes.

Each takes an open connection and returns plain data; values are bound parameters and
identifiers go through ``psycopg.sql``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aep_ops.pg.connect import wrap_errors

if TYPE_CHECKING:
    import psycopg


@dataclass(frozen=True)
class Session:
    """Another session as an on-call engineer needs to see it (never its full query)."""

    pid: int
    user: str | None
    application: str | None
    state: str | None
    seconds: float
    query: str

    def describe(self) -> str:
        app = f" {self.application}" if self.application else ""
        return f"pid {self.pid} ({self.user}{app}, {self.state}, {self.seconds:.1f} s: {self.query!r})"


def advisory_lock_holders(conn: psycopg.Connection, key: int) -> list[int]:
    """PIDs holding the bigint advisory lock ``key`` (pg_locks splits it into classid/objid)."""
    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    with wrap_errors("reading advisory locks from pg_locks", conn):
        rows = conn.execute("select pid from pg_locks where locktype = 'advisory' and granted"
                            " and classid = %s::bigint::oid and objid = %s::bigint::oid and objsubid = 1",
                            (high, low)).fetchall()
    return [r[0] for r in rows]


def lock_table_held(conn: psycopg.Connection, table: str) -> bool | None:
    """True when ``table`` has a row with is_locked <> 0 (knex's lock table); None when absent."""
    from psycopg import sql

    from aep_ops.db.migrate_config import table_identifier

    with wrap_errors(f"reading the migration lock table {table}", conn):
        if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0] is None:
            return None
        query = sql.SQL("select exists (select 1 from {} where is_locked <> 0)").format(table_identifier(table))
        return bool(conn.execute(query).fetchone()[0])


def long_transactions(conn: psycopg.Connection, seconds: int) -> list[Session]:
    """Client sessions whose transaction began more than ``seconds`` ago (ours excluded)."""
    with wrap_errors("reading pg_stat_activity", conn):
        rows = conn.execute(
            "select pid, usename, application_name, state, extract(epoch from now() - xact_start)::float8,"
            " left(query, 80) from pg_stat_activity where xact_start < now() - make_interval(secs => %s)"
            " and pid <> pg_backend_pid() and backend_type = 'client backend' order by xact_start",
            (seconds,)).fetchall()
    return [Session(*r) for r in rows]


def replication_lag(conn: psycopg.Connection) -> dict[str, float]:
    """Seconds each connected standby lags (the largest of write, flush and replay lag)."""
    with wrap_errors("reading pg_stat_replication", conn):
        rows = conn.execute(
            "select coalesce(application_name, client_addr::text, pid::text), coalesce(extract(epoch from"
            " greatest(write_lag, flush_lag, replay_lag)), 0)::float8 from pg_stat_replication").fetchall()
    return {name: lag for name, lag in rows}


def restore_point(conn: psycopg.Connection) -> dict[str, str]:
    """The PITR point before the migration: server time and WAL position (LSN)."""
    with wrap_errors("reading now() and pg_current_wal_lsn()", conn):
        at, lsn = conn.execute("select now(), pg_current_wal_lsn()::text").fetchone()
    return {"time": at.isoformat(), "lsn": lsn}


def commit_marker(conn: psycopg.Connection) -> None:
    """Commit an empty transaction with an xid (the exception here: it writes a commit record), so
    the WAL after the restore point holds a commit for a restore to stop before."""
    with wrap_errors("committing a marker transaction (txid_current())", conn):
        conn.execute("select txid_current()")


def invalid_indexes(conn: psycopg.Connection) -> list[str]:
    """``schema.index on table`` for every index with indisvalid = false (a failed CONCURRENTLY build)."""
    with wrap_errors("reading pg_index", conn):
        rows = conn.execute(
            "select n.nspname, c.relname, t.relname from pg_index i join pg_class c on c.oid = i.indexrelid"
            " join pg_class t on t.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace"
            " where not i.indisvalid order by 1, 2").fetchall()
    return [f"{schema}.{index} on {table}" for schema, index, table in rows]


def migration_pids(conn: psycopg.Connection, tag: str) -> list[int]:
    """Sessions of the migration: those whose application_name is the run's tag."""
    return [r[0] for r in conn.execute("select pid from pg_stat_activity where application_name = %s"
                                       " and pid <> pg_backend_pid()", (tag,)).fetchall()]


def queued_behind(conn: psycopg.Connection, tag: str) -> list[Session]:
    """Sessions waiting for a lock that a migration session holds or waits for ahead of them;
    ``seconds``: how long each has waited (pg_locks.waitstart)."""
    rows = conn.execute(
        "select w.pid, w.usename, w.application_name, w.state,"
        " coalesce(extract(epoch from now() - (select min(l.waitstart) from pg_locks l"
        "   where l.pid = w.pid and not l.granted)), 0)::float8, left(w.query, 80)"
        " from pg_stat_activity w where w.application_name is distinct from %(tag)s and exists ("
        "   select 1 from pg_stat_activity m where m.application_name = %(tag)s"
        "   and m.pid = any(pg_blocking_pids(w.pid)))", {"tag": tag}).fetchall()
    return [Session(*r) for r in rows]


def blockers_of(conn: psycopg.Connection, tag: str) -> list[Session]:
    """Sessions the migration waits for (who holds the lock it cannot get)."""
    rows = conn.execute(
        "select b.pid, b.usename, b.application_name, b.state,"
        " coalesce(extract(epoch from now() - b.xact_start), 0)::float8, left(b.query, 80)"
        " from pg_stat_activity b where b.pid in (select unnest(pg_blocking_pids(m.pid))"
        "   from pg_stat_activity m where m.application_name = %s)", (tag,)).fetchall()
    return [Session(*r) for r in rows]


def relation_locks(conn: psycopg.Connection, tag: str) -> set[tuple[str, str]]:
    """(relation, lock mode) the migration sessions hold on user relations now."""
    rows = conn.execute(
        "select l.relation::regclass::text, l.mode from pg_locks l join pg_stat_activity a on a.pid = l.pid"
        " join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace"
        " where a.application_name = %s and l.granted and l.locktype = 'relation'"
        " and n.nspname not in ('pg_catalog', 'information_schema')", (tag,)).fetchall()
    return {(rel, mode) for rel, mode in rows}


def own_relation_locks(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """(relation, lock mode) this session's open transaction holds on user relations."""
    rows = conn.execute(
        "select l.relation::regclass::text, l.mode from pg_locks l join pg_class c on c.oid = l.relation"
        " join pg_namespace n on n.oid = c.relnamespace where l.pid = pg_backend_pid() and l.granted"
        " and l.locktype = 'relation' and n.nspname not in ('pg_catalog', 'information_schema')").fetchall()
    return {(rel, mode) for rel, mode in rows}


def verify_query(conn: psycopg.Connection, query: str) -> tuple[bool, Any]:
    """Run one configured verification query: it passes when it returns a row whose first
    column is true (or any non-boolean value)."""
    with wrap_errors(f"verification query {query[:60]!r}", conn):
        cur = conn.execute(query)
        row = cur.fetchone() if cur.description else None
    if row is None:
        return False, None
    return (bool(row[0]) if isinstance(row[0], bool) else True), row[0]
