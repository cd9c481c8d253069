"""Rows written around a target time, for the pitr.* tests (the source is the ``source`` fixture
in tests/e2e/conftest.py).

Every time comes from the source's own clock (the clock of the database that commits), and every
wait is for a condition with a deadline: the server's clock past the newest backup's recorded end,
the segment holding the last commit archived."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Sequence

import psycopg

from aep_ops.pg import facts
from aep_ops.pg.target import STOP_RESOLUTION


def labels(dsn: str) -> set[str]:
    """The marker labels a database holds (what a restore kept)."""
    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("select label from drill_markers")}


def write_rows(db, labels):
    """One committed transaction per label, in order (their commit timestamps increase)."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        _insert(conn, labels)


def _insert(conn, labels: Sequence[str]) -> None:
    for label in labels:
        conn.execute("insert into drill_markers (label) values (%s)", (label,))


def server_now(conn) -> datetime:
    """The server's clock (``clock_timestamp()``, not the transaction's start), as an aware datetime."""
    return conn.execute("select clock_timestamp()").fetchone()[0]


def wait_server_clock_past(conn, moment: datetime, *, timeout: float = 10) -> datetime:
    """Poll the server's clock until it reads later than ``moment``; return that reading."""
    deadline = time.monotonic() + timeout
    while (now := server_now(conn)) <= moment:
        if time.monotonic() > deadline:
            raise AssertionError(f"the server's clock still read {now} after {timeout:g}s, not past {moment}")
        time.sleep(0.01)
    return now


def earliest_target(db, conn) -> datetime:
    """The earliest target ``validate_target`` accepts: the newest backup's recorded stop (pgBackRest
    info, whole seconds) plus its resolution. A copy known only by its DSN (no pgBackRest handle):
    its backups ended before this call and pgBackRest truncates their stop to the second, so the
    next whole second of the server's clock is late enough."""
    backrest = getattr(db, "backrest", None)
    if backrest is None:
        return server_now(conn).replace(microsecond=0) + STOP_RESOLUTION
    stops = [b.stop for b in backrest.info() if not b.error]
    assert stops, "the source has no usable backup"
    return max(stops) + STOP_RESOLUTION


def wait_archived_now(conn) -> facts.ArchiverStatus:
    """Close the current WAL segment and wait until the archive holds it (what a restore to a
    recent target needs; FIELD-NOTES)."""
    return facts.wait_archived(conn, facts.switch_wal(conn), timeout=60, poll=0.05)


def target_between(db, before: Sequence[str], after: Sequence[str], *, then: Sequence[str] = ()):
    """Write ``before``, take the target from the source's clock, write ``after``, run the ``then``
    statements (the mistakes a restore undoes: UPDATEs, DELETEs of rows older than the target),
    switch WAL and wait until that segment is archived.

    Returns the target and the labels the source held at it, asked of the source itself (rows
    committed at or before the target, read before ``then`` changes them)."""
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        wait_server_clock_past(conn, earliest_target(db, conn))
        _insert(conn, before)
        target = server_now(conn)
        _insert(conn, after)
        kept = {r[0] for r in conn.execute("select label from drill_markers"
                                           " where pg_xact_commit_timestamp(xmin) <= %s", (target,))}
        for statement in then:
            conn.execute(statement)
        wait_archived_now(conn)
    assert set(before) <= kept and not set(after) & kept, f"the source splits {kept} wrongly at {target}"
    return target, kept
