"""The trustworthy restore test: real pgBackRest backup, real WAL archive, real recovery.

Around a target time T taken from the source's own clock (the commit time of one row), the
source commits rows a few ms before and after T, a transaction that began before T commits after
it, and an UPDATE and a DELETE undo rows older than T; the source itself predicts which rows T
keeps (``pg_xact_commit_timestamp(xmin) <= T``: recovery_target_inclusive is on), and the restored
copy must hold exactly those, as they were. A target the archive cannot reach must fail loudly,
and a target inside the backup must be refused before any restore.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from psycopg import sql

from aep_ops.base.errors import UsageError, VerificationFailed
from aep_ops.pg import facts, fsutil, schema
from aep_ops.pg.target import STOP_RESOLUTION, validate_target
from aep_ops.testing.postgres import ClusterFactory
from tests.support.amcheck import pg_amcheck
from tests.support.pitr_source import wait_archived_now, wait_server_clock_past

pytestmark = pytest.mark.slow


def _restore(factory, source, target, label):
    """Restore ``source`` at ``target`` into a new dir and turn archiving off (not started yet)."""
    restored = factory.blank("restored")
    t0 = time.monotonic()
    source.pgbackrest.restore(restored.datadir, target_time=target, set_label=label)
    restore_s = time.monotonic() - t0
    inherited = "archive_command" in (restored.datadir / "postgresql.auto.conf").read_text()
    restored.cluster.configure({k: v for k, v in source.settings.items() if not k.startswith("archive")})
    restored.cluster.disable_archiving()
    return restored, restore_s, inherited


@pytest.fixture(scope="module")
def quiet_source():
    """A backed-up source whose newest WAL is NOT archived (no switch, archive_timeout off)."""
    factory = ClusterFactory()
    try:
        src = factory.make(archive="pgbackrest", settings={"archive_timeout": "0", "autovacuum": "off"})
        with src.connect() as conn:
            schema.ensure_schema(conn)
        backup = src.pgbackrest.backup("full")
        yield factory, src, backup
    finally:
        factory.close()


def _commit_ts(conn, row_id: int) -> datetime:
    """The commit time of the transaction that wrote ``row_id``, from the committing server."""
    return conn.execute("select pg_xact_commit_timestamp(xmin) from drill_markers where id = %s",
                        (row_id,)).fetchone()[0]


def _xid(conn, row_id: int) -> str:
    return conn.execute("select xmin::text from drill_markers where id = %s", (row_id,)).fetchone()[0]


def _write_around_target(src, backup):
    """On the source, after the backup: rows before T, a transaction that begins before T and
    commits after it, T itself = the commit time of ``at-target`` (recovery_target_inclusive is on
    by default, and pgBackRest leaves it so: a commit AT T is kept), a commit right after T, then an
    UPDATE, a DELETE of a marker and a mistaken DELETE of a seeded table, all after T."""
    with src.connect() as conn, src.connect() as straddler:
        wait_server_clock_past(conn, backup.stop + STOP_RESOLUTION)  # validate_target's rule, on the server's clock
        ids = {label: schema.insert_marker(conn, label) for label in ("to-update", "to-delete", "before-0")}
        straddler.execute("begin")
        ids["straddler"] = schema.insert_marker(straddler, "straddler")
        straddle_began = straddler.execute("select now()").fetchone()[0]
        ids["near-before"] = schema.insert_marker(conn, "near-before")
        ids["at-target"] = schema.insert_marker(conn, "at-target")
        ids["near-after"] = schema.insert_marker(conn, "near-after")
        target = _commit_ts(conn, ids["at-target"])
        conn.execute("update drill_markers set label = 'updated' where id = %s", (ids["to-update"],))
        conn.execute("delete from drill_markers where id = %s", (ids["to-delete"],))
        conn.execute("delete from audit_events")  # the runbook's own use case
        straddler.execute("commit")
        ids["after-0"] = schema.insert_marker(conn, "after-0")
        archived = wait_archived_now(conn)
        commits = {label: _commit_ts(conn, ids[label]) for label in ("near-before", "near-after", "after-0")}
        commits["straddler"] = _commit_ts(conn, ids["straddler"])
        first_lost_xid = _xid(conn, ids["near-after"])
        split = {label: conn.execute("select pg_xact_commit_timestamp(xmin) <= %s from drill_markers where id = %s",
                                     (target, ids[label])).fetchone()[0] for label in ids if label != "to-delete"}
    assert straddle_began < commits["near-before"] < target < commits["near-after"] < commits["straddler"], \
        "the straddler began before T and committed after it; near-before/near-after commit on each side of T"
    assert split == {"to-update": False, "before-0": True, "straddler": False, "near-before": True,
                     "at-target": True, "near-after": False, "after-0": False}, f"the source splits at T: {split}"
    return target, ids, archived, commits, first_lost_xid


KEPT = ("to-update", "to-delete", "before-0", "near-before", "at-target")


def _restore_promote_and_check(factory, src, target, *, backup, archived, ids, first_lost_xid, at_commit, counts):
    """Restore at ``target``, promote, and check the copy against what the source said at T."""
    chosen = validate_target(target, now=datetime.now(timezone.utc), last_archived_at=archived.last_archived_time,
                             earliest_recoverable=None, backups=src.pgbackrest.info())
    assert chosen.label == backup.label
    restored, restore_s, inherited = _restore(factory, src, target, chosen.label)
    assert inherited, "the copy inherited archive_command via postgresql.auto.conf (the trap under test)"
    restored.cluster.start(wait=False)  # recovery length is bounded by wait_for_promotion, not pg_ctl
    promoted = restored.cluster.wait_for_promotion(timeout=60)

    # Recovery stopped right before the first commit after the target, having replayed at-target.
    assert promoted.stop_line and promoted.stop_line.startswith(
        f"recovery stopping before commit of transaction {first_lost_xid},"), promoted.stop_line
    assert promoted.last_replayed_commit == at_commit
    assert promoted.timeline == 2
    assert promoted.archive_mode == "off"
    with restored.cluster.connect() as conn:
        present = {(r[0], r[1]) for r in conn.execute("select id, label from drill_markers")}
        assert present == {(ids[label], label) for label in KEPT}, \
            "the updated row unchanged, the deleted one back, nothing committed after T (the straddler neither)"
        # every seeded table as it was at backup time (audit_events back from its mistaken DELETE)
        assert facts.table_row_counts(conn) == counts | {"drill_markers": len(KEPT)}
        assert pg_amcheck(conn).ok
        assert facts.is_in_recovery(conn) is False
    return restore_s, promoted.seconds


def test_restore_to_time_keeps_exactly_the_rows_committed_up_to_target(pg_cluster_factory, record_property):
    """Exact to the microsecond both ways, on a source whose timezone is not UTC (+05:30). Two
    restores: T = at-target's commit time (kept: a target that moved 1 us earlier loses it) and
    T = near-after's commit time - 1 us (lost: a target that moved 1 us later keeps it); a target
    that lost its offset or its fraction lands elsewhere."""
    src = pg_cluster_factory.make(archive="pgbackrest", settings={"timezone": "Asia/Kolkata", "autovacuum": "off"})
    # The restored copy must not archive even when archive_command comes from postgresql.auto.conf.
    with src.connect() as conn:
        command = sql.Literal(src.pgbackrest.archive_command())
        conn.execute(sql.SQL("alter system set archive_command = {}").format(command))
        conn.execute("select pg_reload_conf()")
        schema.seed(conn)
        counts = facts.table_row_counts(conn)
    assert counts["audit_events"] > 0

    t0 = time.monotonic()
    backup = src.pgbackrest.backup("full")
    backup_s = time.monotonic() - t0
    target, ids, archived, commits, first_lost_xid = _write_around_target(src, backup)
    assert target.utcoffset() == timedelta(hours=5, minutes=30), "the target as the source's session gives it"
    with src.connect() as conn:
        assert facts.table_row_counts(conn)["audit_events"] == 0, "the mistaken DELETE happened on the source"

    timings = {"backup_s": backup_s, "before_gap_ms": (target - commits["near-before"]).total_seconds() * 1000,
               "after_gap_ms": (commits["near-after"] - target).total_seconds() * 1000}
    just_before_next = commits["near-after"] - timedelta(microseconds=1)
    for name, when in (("at_commit", target), ("before_next", just_before_next)):
        restore_s, recovery_s = _restore_promote_and_check(
            pg_cluster_factory, src, when, backup=backup, archived=archived, ids=ids,
            first_lost_xid=first_lost_xid, at_commit=target, counts=counts)
        timings |= {f"{name}_restore_s": restore_s, f"{name}_recovery_s": recovery_s}
    # The promoted copies pushed nothing (no timeline 2 history) into the source's archive.
    repo = src.base / "pgbackrest" / "repo" / "archive" / "aep"
    assert not list(repo.glob("*/00000002.history*"))

    for key, value in timings.items():
        record_property(key, round(value, 2))
    print("PITR timings:", {k: round(v, 2) for k, v in timings.items()})


def _hold_missing_segment(restored, missing: str):
    """Make the copy's restore_command hold the fetch of ``missing`` (a segment the archive lacks)
    until the returned gate file exists, once the server accepts connections (postmaster.pid says
    ready) or on any fetch after the first. The first fetch is the read-ahead before consistency:
    holding it would keep the server from ever getting ready. Bounded at 60 s."""
    gate, seen, pidfile = restored.base / "pg_ctl-returned", restored.base / "fetched-once", \
        restored.datadir / "postmaster.pid"
    hold = (f"test %f = {missing} && {{ test -e {seen} || sed -n 8p {pidfile} | grep -qE \"ready|standby\""
            f" || {{ touch {seen}; false; }}; }} && for i in $(seq 1200); do test -e {gate} && break; sleep 0.05;"
            " done; ")
    auto = restored.datadir / "postgresql.auto.conf"
    held = auto.read_text().replace("restore_command = '", f"restore_command = '{hold}")
    fsutil.write_file(auto, held, mode=0o600, owner="postgres")
    return gate


def test_unreachable_target_is_refused_and_a_forced_restore_fails_loudly(quiet_source, pg_cluster_factory):
    _, src, backup = quiet_source
    with src.connect() as conn:
        schema.insert_marker(conn, "not-archived")
        target = conn.execute("select clock_timestamp()").fetchone()[0]
        archived = facts.archiver_status(conn)
    with pytest.raises(UsageError, match="after the last archived WAL"):
        validate_target(target, now=datetime.now(timezone.utc), last_archived_at=archived.last_archived_time,
                        earliest_recoverable=None, backups=[backup])

    # A caller that skips validation must still not get a silent, wrong restore: `pg_ctl -w start`
    # sees a hot standby accepting connections and returns 0, and only then does recovery fail.
    restored, _, _ = _restore(pg_cluster_factory, src, target, backup.label)
    gate = _hold_missing_segment(restored, f"{backup.wal_stop[:16]}{int(backup.wal_stop[16:], 16) + 1:08X}")

    assert restored.cluster.start() is True, "pg_ctl -w start reports success ..."
    gate.touch()
    with pytest.raises(VerificationFailed, match="does not reach the recovery target"):
        restored.cluster.wait_for_promotion(timeout=60)  # ... but recovery then fails
    assert restored.cluster.postmaster_pid() is None


def test_target_inside_the_backup_is_refused(quiet_source):
    _, src, backup = quiet_source
    info = [b for b in src.pgbackrest.info() if b.label == backup.label]
    assert info, "pgbackrest info must list the backup"
    for target in (info[0].start, info[0].stop - timedelta(milliseconds=1), info[0].stop + timedelta(milliseconds=500)):
        with pytest.raises(UsageError, match="silently recover to the backup's end"):
            validate_target(target, now=datetime.now(timezone.utc),
                            last_archived_at=datetime.now(timezone.utc), earliest_recoverable=None, backups=info)


def test_restore_never_writes_over_the_source_or_a_non_empty_dir(quiet_source, pg_cluster_factory):
    _, src, backup = quiet_source
    for target in (src.datadir, src.datadir / "base", src.datadir.parent):
        with pytest.raises(UsageError, match="refusing to restore into"):
            src.pgbackrest.restore(target, set_label=backup.label)
    busy = pg_cluster_factory.blank("busy").base / "data"
    busy.mkdir()
    (busy / "something").write_text("keep me")
    with pytest.raises(UsageError, match="not an empty directory"):
        src.pgbackrest.restore(busy, set_label=backup.label)
    assert (busy / "something").read_text() == "keep me"
    assert src.cluster.is_running()
