"""Read-only probes of a running PostgreSQL server (facts, in pyinfra's sense).

Each function takes an open connection, runs one cheap query and returns plain data.
Two exceptions, named as such: ``ensure_amcheck`` may create the amcheck extension (run it
on restored copies, which is what it is for) and ``switch_wal`` closes a WAL segment.
Identifiers are composed with ``psycopg.sql``; values are always bound parameters.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from aep_ops.base.errors import CommandTimeout
from aep_ops.pg.connect import wrap_errors

if TYPE_CHECKING:
    import psycopg

_SEGMENT_RE = re.compile(r"^[0-9A-F]{24}")


@dataclass(frozen=True)
class ArchiverStatus:
    """``pg_stat_archiver``: is WAL reaching the archive, and how fresh is it?"""

    archived_count: int
    last_archived_wal: str | None
    last_archived_time: datetime | None
    failed_count: int
    last_failed_wal: str | None
    last_failed_time: datetime | None
    stats_reset: datetime | None

    @property
    def failing(self) -> bool:
        """True when the latest archive attempt failed (a failure newer than the last success)."""
        if self.last_failed_time is None:
            return False
        return self.last_archived_time is None or self.last_failed_time > self.last_archived_time


def archiver_status(conn: psycopg.Connection) -> ArchiverStatus:
    with wrap_errors("reading pg_stat_archiver", conn):
        row = conn.execute(
            "select archived_count, last_archived_wal, last_archived_time,"
            " failed_count, last_failed_wal, last_failed_time, stats_reset from pg_stat_archiver"
        ).fetchone()
    return ArchiverStatus(*row)


def is_in_recovery(conn: psycopg.Connection) -> bool:
    with wrap_errors("checking pg_is_in_recovery()", conn):
        return bool(conn.execute("select pg_is_in_recovery()").fetchone()[0])


def timeline(conn: psycopg.Connection) -> int:
    """The timeline the server is on now.

    In recovery this is ``pg_control_checkpoint().timeline_id``. After a promotion the
    control file only moves to the new timeline at the next checkpoint, which PG 15
    requests lazily, so on a primary the timeline of the current WAL file is used.
    """
    with wrap_errors("reading the timeline", conn):
        row = conn.execute(
            "select case when pg_is_in_recovery() then (pg_control_checkpoint()).timeline_id"
            " else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end"
        ).fetchone()
    return int(row[0])


def checkpoint_timeline(conn: psycopg.Connection) -> int:
    """``pg_control_checkpoint().timeline_id``: the timeline of the latest checkpoint."""
    with wrap_errors("reading pg_control_checkpoint()", conn):
        return int(conn.execute("select timeline_id from pg_control_checkpoint()").fetchone()[0])


def last_replayed_commit(conn: psycopg.Connection) -> datetime | None:
    """Commit time of the last transaction replayed by recovery (still set after promotion)."""
    with wrap_errors("reading pg_last_xact_replay_timestamp()", conn):
        return conn.execute("select pg_last_xact_replay_timestamp()").fetchone()[0]


def wal_position(conn: psycopg.Connection) -> tuple[int, int, int]:
    """(bytes of WAL written since 0/0, wal_segment_size in bytes, archive_timeout in seconds)."""
    written, segment_size, timeout = conn.execute(
        "select pg_current_wal_lsn() - '0/0'::pg_lsn,"
        " (select setting::bigint * case unit when '8kB' then 8192 when 'B' then 1 else 1048576 end"
        "  from pg_settings where name = 'wal_segment_size'),"
        " (select setting::int from pg_settings where name = 'archive_timeout')").fetchone()
    return int(written), int(segment_size), int(timeout)


def pending_restart(conn: psycopg.Connection) -> list[str]:
    """Settings whose file value needs a restart. pg_file_settings reads the files at query time,
    so the answer does not depend on whether this backend has processed a reload yet."""
    with wrap_errors("reading settings that need a restart", conn):
        return [r[0] for r in conn.execute(
            "select name from pg_settings where pending_restart union select name from pg_file_settings"
            " where not applied and error = 'setting could not be applied' order by 1")]


def database_exists(conn: psycopg.Connection, dbname: str) -> bool:
    with wrap_errors("looking up the application database", conn):
        return conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone() is not None


def databases_size(conn: psycopg.Connection) -> int:
    """Bytes of every database of the cluster (what a restore has to write)."""
    return int(conn.execute("select sum(pg_database_size(oid)) from pg_database").fetchone()[0] or 0)


def row_counts(conn: psycopg.Connection, tables: list[str], *, missing_as_zero: bool = False) -> dict[str, int]:
    """count(*) of each table. A missing table is an error (a drill must not compare 0 with 0),
    unless ``missing_as_zero`` (seeding: public-schema tables not created yet)."""
    from psycopg import sql

    present = set(tables)
    if missing_as_zero:
        present = {r[0] for r in conn.execute(
            "select tablename from pg_tables where schemaname = 'public' and tablename = any(%s)", (list(tables),))}
    return {t: (int(conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(t))).fetchone()[0])
                if t in present else 0) for t in tables}


def wal_segment_size(conn: psycopg.Connection) -> int:
    """wal_segment_size in bytes (also readable on a standby, unlike the WAL position)."""
    return int(conn.execute("select setting::bigint from pg_settings where name = 'wal_segment_size'").fetchone()[0])


def archive_ready_count(conn: psycopg.Connection) -> int:
    """WAL segments waiting for the archiver (``.ready`` files in pg_wal/archive_status)."""
    with wrap_errors("listing pg_wal/archive_status", conn):
        return int(conn.execute("select count(*) from pg_ls_archive_statusdir() where name like '%.ready'")
                   .fetchone()[0])


def settings_with_source(conn: psycopg.Connection, names: list[str]) -> dict[str, tuple[str, str | None]]:
    """{name: (setting, the file that set it or None)} for each of ``names``."""
    with wrap_errors("reading settings", conn):
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "select name, setting, sourcefile from pg_settings where name = any(%s)", (list(names),))}


def setting(conn: psycopg.Connection, name: str) -> str:
    """Current value of one server setting (``current_setting``), e.g. to prove archiving is off."""
    with wrap_errors(f"reading setting {name}", conn):
        return conn.execute("select current_setting(%s)", (name,)).fetchone()[0]


def ensure_amcheck(conn: psycopg.Connection) -> None:
    """Create the amcheck extension when missing (on restored copies, which is what it is for).
    Only when missing: CREATE EXTENSION IF NOT EXISTS is refused on a read-only copy even when the
    extension is there, and amcheck itself only reads."""
    with wrap_errors("creating extension amcheck", conn):
        if not conn.execute("select 1 from pg_extension where extname = 'amcheck'").fetchone():
            conn.execute("create extension amcheck")


def checkable_relations(conn: psycopg.Connection) -> dict[str, int]:
    """What pg_amcheck will read: B-tree indexes and permanent tables (with TOAST), counted and sized."""
    query = (
        "select count(*) filter (where c.relkind = 'i'), count(*) filter (where c.relkind in ('r', 'm', 't')),"
        " coalesce(sum(pg_relation_size(c.oid)) filter (where c.relkind = 'i'), 0)::int8,"
        " coalesce(sum(pg_relation_size(c.oid)) filter (where c.relkind in ('r', 'm', 't')), 0)::int8"
        " from pg_class c left join pg_am a on a.oid = c.relam"
        " where c.relpersistence = 'p' and (c.relkind in ('r', 'm', 't') or (c.relkind = 'i' and a.amname = 'btree'))"
    )
    with wrap_errors("counting relations to check", conn):
        indexes, tables, index_bytes, table_bytes = conn.execute(query).fetchone()
    return {"indexes": int(indexes), "tables": int(tables), "index_bytes": int(index_bytes),
            "table_bytes": int(table_bytes)}


def table_row_counts(conn: psycopg.Connection, *, schema: str = "public") -> dict[str, int]:
    """Exact ``count(*)`` of every ordinary table in ``schema`` (for small drill databases)."""
    from psycopg import sql

    with wrap_errors(f"counting rows in schema {schema}", conn):
        tables = [
            r[0]
            for r in conn.execute(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = %s and c.relkind in ('r', 'p') and not c.relispartition order by 1",
                (schema,),
            ).fetchall()
        ]
        counts = {}
        for table in tables:
            query = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
            counts[table] = int(conn.execute(query).fetchone()[0])
    return counts


def switch_wal(conn: psycopg.Connection) -> str:
    """Close the current WAL segment so it gets archived; return its file name.

    Not read-only, but harmless: needed before restoring to a recent target, or the
    segment holding the target is not in the archive yet.
    """
    with wrap_errors("switching WAL (pg_switch_wal)", conn):
        return conn.execute("select pg_walfile_name(pg_switch_wal())").fetchone()[0]


def wait_archived(conn: psycopg.Connection, walfile: str, *, timeout: float = 60, poll: float = 0.2) -> ArchiverStatus:
    """Poll until ``walfile`` is archived: its ``.done`` file is in pg_wal/archive_status, or
    ``pg_stat_archiver`` names a later segment (the archiver takes segments in name order).

    ``last_archived_wal`` alone is not enough. After a backup it is often the backup history file
    ``SEG.OFFSET.backup``, named after the backup's START segment and archived after its stop
    segment (the archiver finds it on its next scan). Read as segment SEG it made an idle server,
    whose last switch returns that stop segment, look as if the segment never arrived: nothing
    newer is archived, so pitr.cutover's check waited out its 120 s right after its first backup.
    """
    deadline = time.monotonic() + timeout
    first = archiver_status(conn)
    while True:
        status = archiver_status(conn)
        state = archive_state(conn, walfile)
        if is_archived(walfile, status, state):
            return status
        if time.monotonic() > deadline:
            raise CommandTimeout(_not_archived_text(walfile, timeout, state, first, status))
        time.sleep(poll)


def is_archived(walfile: str, status: ArchiverStatus, state: str | None) -> bool:
    """``walfile`` is in the archive: its ``.done`` file is there (``state``), or the archiver names a
    later plain segment. Not a name that merely starts with a later one: a backup's history file
    (``...05.00000028.backup``) archived after segment 6 names segment 5."""
    last = status.last_archived_wal or ""
    return state == "done" or bool(_SEGMENT_RE.fullmatch(last) and last >= walfile)


def archive_state(conn: psycopg.Connection, walfile: str) -> str | None:
    """``done`` (archived), ``ready`` (waiting for the archiver) or None (neither status file)."""
    with wrap_errors("listing pg_wal/archive_status", conn):
        names = {r[0] for r in conn.execute("select name from pg_ls_archive_statusdir() where name = any(%s)",
                                            ([f"{walfile}.done", f"{walfile}.ready"],))}
    return "done" if f"{walfile}.done" in names else "ready" if names else None


def _not_archived_text(walfile: str, timeout: float, state: str | None, first: ArchiverStatus,
                       status: ArchiverStatus) -> str:
    """The timeout's message: where the segment stands and the archiver's last failure, if any."""
    where = ("waits for the archiver (.ready)" if state == "ready" else
             "is not marked for archiving (no .ready: written while archive_mode was off?)")
    failed, during = "", status.failed_count - first.failed_count
    if status.failing or during > 0:
        notes = [f"{during} failure(s) while waiting"] * (during > 0) + ["still failing"] * status.failing
        failed = (f"; last failure: {status.last_failed_wal} at {status.last_failed_time:%Y-%m-%d %H:%M:%S%z}"
                  f" ({', '.join(notes)})")
    return (f"WAL {walfile} not archived within {timeout:g}s: it {where}; last archived:"
            f" {status.last_archived_wal or 'none'}{failed}; check archive_command and the server log")


def smoke_queries(conn: psycopg.Connection, queries: list[str]) -> tuple[dict[str, str], list[str]]:
    """Run each configured smoke query; return (result per query, problems). A query that
    errors or returns no row is a problem, reported with PostgreSQL's own words."""
    results: dict[str, str] = {}
    problems: list[str] = []
    for query in queries:
        try:
            row = conn.execute(query).fetchone()
        except Exception as exc:  # psycopg.Error: the message names the query, never a secret
            if not conn.autocommit:
                conn.rollback()
            results[query] = "error"
            problems.append(f"{query}: {str(exc).strip()}")
            continue
        results[query] = "ok" if row is not None else "no rows"
        if row is None:
            problems.append(f"{query}: no rows")
    return results, problems
