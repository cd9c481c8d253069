"""pitr.cutover's last step (check_archiving) right after the first backup of a new primary.

Under load the cutover failed "verification failed (check_archiving)" after 120 s although its WAL
was archived: the first backup outlasted archive_timeout, so its WAL crossed a segment; the
archiver took the stop segment first and the backup history file (``START.OFFSET.backup``) on its
next scan; pg_stat_archiver's last archived file then read as an older segment, and the idle copy
never archived a newer one. The first test puts the archiver in that order on purpose (real
PostgreSQL 15, archive_command pgBackRest); the second checks that a wait which does time out says
where the segment stands and what the archiver's last failure was.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from aep_ops import config
from aep_ops.db import locations
from aep_ops.db.backends import local_cutover
from aep_ops.base.errors import CommandTimeout
from aep_ops.pg import facts

pytestmark = pytest.mark.slow


def _wait_for(condition: Callable[[], Any], what: str, timeout: float = 60, poll: float = 0.1) -> Any:
    """The condition's first true value; fails saying ``what`` did not happen by the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"within {timeout:g}s: {what}"
        time.sleep(poll)
    return value


def _status_files(db: locations.LocalDb) -> set[str]:
    return {p.name for p in (db.cluster.datadir / "pg_wal" / "archive_status").iterdir()}


def _backup_across_a_segment(db: locations.LocalDb, conn: Any) -> tuple[str, str]:
    """A base backup whose WAL crosses a segment boundary, as the cutover's did under load
    (archive_timeout closed a segment during it), then the order the loaded machine archived in:
    the stop segment first, the backup history file last. Returns (stop segment, history file)."""
    start = conn.execute("select pg_walfile_name(pg_backup_start('aep-test', true))").fetchone()[0]
    conn.execute("select pg_logical_emit_message(false, 'aep-test', 'during the backup')")
    facts.switch_wal(conn)
    stop = conn.execute("select pg_walfile_name(lsn) from pg_backup_stop(true)").fetchone()[0]  # waits: archived
    [history] = [n[:-5] for n in _status_files(db) if n.startswith(start) and n.endswith(".backup.done")]
    status_dir = db.cluster.datadir / "pg_wal" / "archive_status"
    (status_dir / f"{history}.done").rename(status_dir / f"{history}.ready")  # archive it once more, last
    conn.execute("select pg_reload_conf()")  # SIGHUP sets the archiver's latch: it rescans now
    _wait_for(lambda: facts.archiver_status(conn).last_archived_wal == history,
              f"pg_stat_archiver reporting {history} as the last archived file")
    return stop, history


@contextmanager
def _system_setting(name: str, value: str) -> Iterator[psycopg.Connection]:
    """ALTER SYSTEM SET name = value on the shared source, reloaded; reset and reloaded on the way
    out, whatever the test did. Yields the connection that set it."""
    db = locations.local_db(config.load("local"))
    with db.cluster.connect(connect_timeout=5) as conn:
        conn.execute(sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("select pg_reload_conf()")
        try:
            yield conn
        finally:
            conn.execute(sql.SQL("alter system reset {}").format(sql.Identifier(name)))
            conn.execute("select pg_reload_conf()")


@pytest.fixture
def idle_source(source):
    """archive_timeout = 0 on the shared source: no background write (autovacuum after the seeding)
    closes a segment on its own, so nothing newer is archived behind the test's back, as on the
    idle copy of the cutover. Reset afterwards."""
    with _system_setting("archive_timeout", "0"):
        yield source


def test_the_stop_segment_counts_as_archived_when_the_history_file_came_last(idle_source):
    settings = config.load("local")
    db = locations.local_db(settings)
    with db.cluster.connect(connect_timeout=5) as conn:
        stop, history = _backup_across_a_segment(db, conn)
        assert history[:24] < stop, "precondition: the last archived name reads as an older segment"
        status = facts.wait_archived(conn, stop, timeout=60, poll=0.05)
        assert status.last_archived_wal == history and not status.failing
    outputs = local_cutover.check_archiving(settings, locations.SOURCE_NAME)
    assert outputs["wal"] >= stop and outputs["repos"] == [1]


@pytest.fixture
def failing_archiver(source):
    """archive_command = /bin/false in postgresql.auto.conf; reset afterwards and the backlog drained,
    so the module's shared source archives again whatever the test did."""
    with _system_setting("archive_command", "/bin/false") as conn:
        yield conn
    with locations.local_db(config.load("local")).cluster.connect(connect_timeout=5) as conn:
        conn.execute("select pg_logical_emit_message(false, 'aep-test', 'drain')")
        facts.wait_archived(conn, facts.switch_wal(conn), timeout=120, poll=0.05)


def _new_segment_and_failing(conn: Any) -> str | None:
    """Write and close one more segment; the segment the archiver fails on, once it does (the
    first segment may still go out under the old command if the archiver reloads late)."""
    conn.execute("select pg_logical_emit_message(false, 'aep-test', 'unarchivable')")
    facts.switch_wal(conn)
    status = facts.archiver_status(conn)
    return status.last_failed_wal if status.failing else None


def test_a_wait_that_times_out_names_the_archivers_last_failure(failing_archiver):
    conn = failing_archiver
    wal = _wait_for(lambda: _new_segment_and_failing(conn), "the archiver failing with archive_command /bin/false",
                    poll=1)
    with pytest.raises(CommandTimeout) as raised:
        facts.wait_archived(conn, wal, timeout=1, poll=0.05)
    message = str(raised.value)
    assert f"WAL {wal} not archived within 1s: it waits for the archiver (.ready)" in message, message
    assert f"last failure: {wal} at " in message and "still failing" in message, message
