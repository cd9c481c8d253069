"""The trustworthy restore test: real pgBackRest backup, real WAL archive, real recovery.

Sentinel rows are committed on both sides of a target time T; the source itself predicts
which rows T keeps (``pg_xact_commit_timestamp(xmin) <= T``); the restored copy must hold
exactly those. A target the archive cannot reach must fail loudly, and a target inside the
backup must be refused before any restore.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from psycopg import sql

from aep_ops.errors import UsageError, VerificationFailed
from aep_ops.pg import facts, fsutil, schema
from aep_ops.pg.target import validate_target
from aep_ops.testing.postgres import ClusterFactory

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


def test_restore_to_time_keeps_exactly_the_rows_committed_up_to_target(pg_cluster_factory, record_property):
    src = pg_cluster_factory.make(archive="pgbackrest")
    # The restored copy must not archive even when archive_command comes from postgresql.auto.conf.
    with src.connect() as conn:
        command = sql.Literal(src.pgbackrest.archive_command())
        conn.execute(sql.SQL("alter system set archive_command = {}").format(command))
        conn.execute("select pg_reload_conf()")
        schema.seed(conn)
        source_counts = facts.table_row_counts(conn)

    t0 = time.monotonic()
    backup = src.pgbackrest.backup("full")
    backup_s = time.monotonic() - t0
    time.sleep(1.1)  # pgBackRest stop times have 1 s resolution; T must be clearly after the backup

    with src.connect() as conn:
        before = [schema.insert_marker(conn, f"before-{i}") for i in range(3)]  # one transaction each
        time.sleep(0.2)
        target = conn.execute("select clock_timestamp()").fetchone()[0]
        time.sleep(0.2)
        after = [schema.insert_marker(conn, f"after-{i}") for i in range(3)]
        archived = facts.wait_archived(conn, facts.switch_wal(conn), timeout=30)
        kept = {r[0] for r in conn.execute(
            "select id from drill_markers where pg_xact_commit_timestamp(xmin) <= %s", (target,))}
        lost = {r[0] for r in conn.execute(
            "select id from drill_markers where pg_xact_commit_timestamp(xmin) > %s", (target,))}
    assert kept == set(before) and lost == set(after), "the source's own prediction must split the sentinels at T"

    chosen = validate_target(target, now=datetime.now(timezone.utc), last_archived_at=archived.last_archived_time,
                             earliest_recoverable=None, backups=src.pgbackrest.info())
    assert chosen.label == backup.label

    restored, restore_s, inherited = _restore(pg_cluster_factory, src, target, chosen.label)
    assert inherited, "the copy inherited archive_command via postgresql.auto.conf (the trap under test)"
    t0 = time.monotonic()
    restored.cluster.start(wait=False)  # recovery length is bounded by wait_for_promotion, not pg_ctl
    promoted = restored.cluster.wait_for_promotion(timeout=60)
    promote_s = time.monotonic() - t0

    assert promoted.stop_line and promoted.stop_line.startswith("recovery stopping before commit")
    assert promoted.timeline == 2
    assert promoted.archive_mode == "off"
    assert promoted.last_replayed_commit is not None and promoted.last_replayed_commit <= target
    with restored.cluster.connect() as conn:
        present = {r[0] for r in conn.execute("select id from drill_markers")}
        assert present == kept, f"expected exactly {sorted(kept)}, found {sorted(present)}"
        assert not present & lost
        # every seeded table as it was at backup time, plus exactly the kept sentinels
        assert facts.table_row_counts(conn) == source_counts | {"drill_markers": len(kept)}
        assert facts.amcheck_all(conn) == []
        assert facts.is_in_recovery(conn) is False
    # The promoted copy pushed nothing (no timeline 2 history) into the source's archive.
    repo = src.base / "pgbackrest" / "repo" / "archive" / "aep"
    assert not list(repo.glob("*/00000002.history*"))

    timings = {"backup_s": backup_s, "restore_s": restore_s, "promote_s": promote_s, "recovery_s": promoted.seconds}
    for key, value in timings.items():
        record_property(key, round(value, 2))
    print("PITR timings:", {k: round(v, 2) for k, v in timings.items()})


def test_unreachable_target_is_refused_and_a_forced_restore_fails_loudly(quiet_source, pg_cluster_factory):
    _, src, backup = quiet_source
    with src.connect() as conn:
        schema.insert_marker(conn, "not-archived")
        target = conn.execute("select clock_timestamp()").fetchone()[0]
        archived = facts.archiver_status(conn)
    with pytest.raises(UsageError, match="after the last archived WAL"):
        validate_target(target, now=datetime.now(timezone.utc), last_archived_at=archived.last_archived_time,
                        earliest_recoverable=None, backups=[backup])

    # A caller that skips validation must still not get a silent, wrong restore. Delay the
    # fetch of the first missing segment so that `pg_ctl -w start` sees a hot standby
    # accepting connections and returns 0 before recovery fails: the trap to guard against.
    restored, _, _ = _restore(pg_cluster_factory, src, target, backup.label)
    missing = f"{backup.wal_stop[:16]}{int(backup.wal_stop[16:], 16) + 1:08X}"
    auto = restored.datadir / "postgresql.auto.conf"
    slowed = auto.read_text().replace("restore_command = '", f"restore_command = 'test %f = {missing} && sleep 2; ")
    fsutil.write_file(auto, slowed, mode=0o600, owner="postgres")

    assert restored.cluster.start() is True, "pg_ctl -w start reports success ..."
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
