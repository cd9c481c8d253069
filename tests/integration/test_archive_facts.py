"""The archive lag that gates a restore (``local_facts.archive_facts``), read from a real
PostgreSQL 15 whose archiver the test steers: archiving, held on a segment (a backlog that is not
failing) or failing. The lag is how old the oldest data not yet archived can be: 0 when every byte
written is archived; at most archive_timeout when only the open segment is pending (PostgreSQL
switches it within archive_timeout of a write); the time since the last archive, unbounded, when
whole segments wait or archiving fails. ``now`` is passed in so each figure is exact."""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest

from aep_ops.db import locations
from aep_ops.db.backends.local_facts import archive_facts
from aep_ops.pg import facts
from aep_ops.pg.fsutil import ensure_dir

TIMEOUT = 3600  # archive_timeout: long enough that PostgreSQL never switches a segment by itself here
TWO_HOURS = timedelta(hours=2)


class Archiver:
    """A source archiving with ``cp`` into its own directory, unless the test holds it (the
    command waits: segments queue up, nothing fails) or makes it fail (exit 1)."""

    def __init__(self, factory):
        self.ctl = Path(tempfile.mkdtemp(prefix="aep-archctl-", dir="/tmp"))
        self.ctl.chmod(0o755)
        archive = self.ctl / "archive"
        ensure_dir(archive, owner="postgres", mode=0o700)
        command = (f"test ! -e {self.ctl}/fail && while [ -e {self.ctl}/hold ]; do sleep 0.05; done"
                   f" && cp %p {archive}/%f")
        self.tc = factory.make(settings={"wal_level": "replica", "archive_mode": "on", "archive_command": command,
                                         "archive_timeout": f"{TIMEOUT}s"})
        self.db = locations.LocalDb(cluster=self.tc.cluster, backrest=None, dbname="postgres",
                                    archive_timeout=TIMEOUT, extra_settings={})

    def write(self) -> None:
        """A committed write: WAL that archive_timeout counts as activity."""
        self.tc.sql("create table if not exists t (v int)")
        self.tc.sql("insert into t values (1)")

    def switch(self) -> str:
        with self.tc.cluster.connect() as conn:
            return facts.switch_wal(conn)

    def status(self) -> facts.ArchiverStatus:
        with self.tc.cluster.connect() as conn:
            return facts.archiver_status(conn)

    def wait_archived(self, walfile: str) -> None:
        with self.tc.cluster.connect() as conn:
            facts.wait_archived(conn, walfile, timeout=60, poll=0.02)

    def wait_failing(self, walfile: str, timeout: float = 60) -> facts.ArchiverStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.failing and status.last_failed_wal == walfile:
                return status
            time.sleep(0.05)
        raise AssertionError(f"archiving {walfile} never failed within {timeout:.0f}s: {self.status()}")

    def written(self) -> tuple[int, int]:
        """(bytes of WAL written, wal_segment_size)."""
        with self.tc.cluster.connect() as conn:
            written, segment, _ = facts.wal_position(conn)
        return written, segment

    def ready_files(self) -> list[str]:
        """Files the archiver has yet to archive (pg_wal/archive_status/*.ready)."""
        with self.tc.cluster.connect() as conn:
            return [r[0] for r in conn.execute("select name from pg_ls_archive_statusdir() where name like '%.ready'")]

    def close(self) -> None:
        (self.ctl / "hold").unlink(missing_ok=True)  # let a waiting archive_command end before teardown
        shutil.rmtree(self.ctl, ignore_errors=True)


@pytest.fixture
def source(pg_cluster_factory):
    archiver = Archiver(pg_cluster_factory)
    try:
        yield archiver
    finally:
        archiver.close()


def _segment_end(walfile: str, segment: int) -> int:
    return (int(walfile[8:16], 16) * (0x100000000 // segment) + int(walfile[16:24], 16) + 1) * segment


def test_nothing_archived_yet_is_an_unknown_lag(source):
    found = archive_facts(source.db)
    assert found["last_archived_at"] is None and found["archive_lag_seconds"] is None


def test_every_byte_archived_is_no_lag(source):
    source.write()
    for _ in range(20):  # the bgwriter may log a record at any moment: read the facts while none came
        source.wait_archived(source.switch())
        before = source.written()
        found = archive_facts(source.db, now=source.status().last_archived_time + TWO_HOURS)
        if source.written() == before:
            break
    else:
        raise AssertionError("WAL kept moving after every switch: no moment when all of it was archived")
    written, segment = before
    assert written == _segment_end(found["last_archived_wal"], segment), "precondition: all written is archived"
    assert found["archive_lag_seconds"] == 0.0, "two hours after the last archive, nothing is at risk"


def test_only_the_open_segment_pending_is_bounded_by_archive_timeout(source):
    source.write()
    source.wait_archived(source.switch())
    source.write()  # into the open segment: PostgreSQL switches it within archive_timeout
    last = source.status().last_archived_time
    assert archive_facts(source.db, now=last + timedelta(seconds=7))["archive_lag_seconds"] == 7.0
    bounded = archive_facts(source.db, now=last + TWO_HOURS)
    assert not bounded["failing"] and bounded["archive_lag_seconds"] == float(TIMEOUT)


def _backup_history_archived_last(source) -> None:
    """A backup spanning a segment switch, archived so that the last archived file is its backup
    history file (named after its START segment), archived after the segment its stop is in: what a
    pgBackRest backup usually leaves. The archiver decides the order; retried until it is so."""
    for _ in range(10):
        with source.tc.cluster.connect() as conn:
            conn.autocommit = True
            conn.execute("select pg_backup_start('test', true)")
            source.write()
            source.wait_archived(source.switch())
            source.write()
            conn.execute("select pg_backup_stop(false)")
        deadline = time.monotonic() + 60
        while source.ready_files():
            assert time.monotonic() < deadline, f"still waiting to be archived: {source.ready_files()}"
            time.sleep(0.02)
        if source.status().last_archived_wal.endswith(".backup"):
            return
    raise AssertionError("the backup history file was never the last file archived")


def test_after_a_backup_nothing_waits_whatever_the_last_file_is_named(source):
    _backup_history_archived_last(source)
    last = source.status().last_archived_time
    written, segment = source.written()
    assert written == _segment_end(source.status().last_archived_wal, segment) + segment, \
        "precondition: the archive holds a segment past the one the last file is named after"
    idle = archive_facts(source.db, now=last + TWO_HOURS)
    if source.written() == (written, segment):  # the bgwriter wrote nothing meanwhile
        assert idle["archive_lag_seconds"] == 0.0, "every completed segment is archived, the open one is empty"
    source.write()
    found = archive_facts(source.db, now=last + TWO_HOURS)
    assert found["archive_lag_seconds"] == float(TIMEOUT), "only the open segment is pending, not two hours of WAL"


def test_whole_segments_waiting_is_the_time_since_the_last_archive(source):
    source.write()
    source.wait_archived(source.switch())
    last = source.status().last_archived_time
    (source.ctl / "hold").touch()
    source.write()
    held = source.switch()  # the archiver now waits on this segment
    source.write()  # and data lands in the next one: a whole segment behind
    backlog = archive_facts(source.db, now=last + TWO_HOURS)
    assert not backlog["failing"], "a held archiver is slow, not failing"
    assert backlog["last_archived_at"] == last
    assert backlog["archive_lag_seconds"] == TWO_HOURS.total_seconds(), "not capped by archive_timeout"

    (source.ctl / "hold").unlink()
    source.wait_archived(held)  # the backlog drains: only the open segment is pending again
    caught_up = archive_facts(source.db, now=source.status().last_archived_time + TWO_HOURS)
    assert caught_up["archive_lag_seconds"] == float(TIMEOUT)


def test_failing_archiving_is_the_time_since_the_last_archive(source):
    source.write()
    source.wait_archived(source.switch())
    last = source.status().last_archived_time
    (source.ctl / "fail").touch()
    source.write()
    failed = source.switch()
    source.wait_failing(failed)
    found = archive_facts(source.db, now=last + TWO_HOURS)
    assert found["failing"] and found["last_failed_wal"] == failed and found["failed_count"] >= 1
    assert found["archive_lag_seconds"] == TWO_HOURS.total_seconds(), \
        "the archiver retries and fails: archive_timeout bounds nothing"
