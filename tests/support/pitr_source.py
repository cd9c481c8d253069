"""Rows written around a target time, for the pitr.* tests (the source is the ``source`` fixture
in tests/e2e/conftest.py)."""

from __future__ import annotations

import time

import psycopg


def write_rows(db, labels):
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        for label in labels:
            conn.execute("insert into drill_markers (label) values (%s)", (label,))
            time.sleep(0.05)


def target_between(db, before, after):
    """Write ``before``, take the target time, write ``after``, switch WAL and let it be archived.
    Returns the target and the labels committed at or before it (asked of the source itself)."""
    time.sleep(1.2)  # the target must lie after the backup's end (whole seconds in pgBackRest)
    write_rows(db, before)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        target = conn.execute("select clock_timestamp()").fetchone()[0]
    write_rows(db, after)
    with psycopg.connect(db.dsn(), autocommit=True) as conn:
        kept = {r[0] for r in conn.execute("select label from drill_markers"
                                           " where pg_xact_commit_timestamp(xmin) <= %s", (target,))}
        conn.execute("select pg_switch_wal()")
    time.sleep(2)
    return target, kept
