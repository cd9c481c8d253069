"""Read-only facts about the local source that gate a restore: the archiver's state, the archive
lag, and whether a target can be restored (which backup, or why not)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aep_ops.db import locations
from aep_ops.base.errors import UsageError


@dataclass(frozen=True)
class TargetCheck:
    """What validating a target found: the backup to restore and how far behind the archive is."""

    target: datetime
    backup_label: str
    backup_stop: datetime
    last_archived_at: datetime | None
    archive_lag_seconds: float | None


def archive_facts(db: locations.LocalDb, *, now: datetime | None = None) -> dict[str, Any]:
    """Read-only facts from the running source: the archiver's state and the archive lag.

    The lag is how old the oldest data not yet in the archive can be (what a dead primary
    would lose):
    - 0 when every byte of WAL written lies in archived segments;
    - now minus the last archive when whole segments wait for the archiver (a real backlog:
      ``.ready`` files in pg_wal/archive_status) or archiving fails;
    - otherwise only the open segment is pending, and archive_timeout bounds it: PostgreSQL
      switches segments within archive_timeout of an important write, while the background
      records it keeps writing on an idle server never force a switch (they are not data).

    Whether whole segments wait is read from archive_status, not guessed from the name of the
    last archived file: after a backup that name is the backup history file, named after the
    backup's START segment, while the segments up to its stop were archived before it; guessed
    from it, an idle source read as a backlog since the backup (hours, failing the drill).
    """
    from aep_ops.pg import facts

    with db.cluster.connect(db.dbname) as conn:
        status = facts.archiver_status(conn)
        written, segment_size, timeout = facts.wal_position(conn)
        waiting = _segments_waiting(conn)
    now = now or datetime.now(timezone.utc)
    last = status.last_archived_time
    end = _segment_end(status.last_archived_wal, int(segment_size)) if status.last_archived_wal else None
    if last is None:
        lag = None
    elif (end is not None and written <= end) or (not waiting and written % segment_size == 0):
        lag = 0.0  # all written is archived: the open segment is empty and none waits
    elif not waiting and timeout > 0 and not status.failing:
        lag = min((now - last).total_seconds(), float(timeout))
    else:
        lag = (now - last).total_seconds()
    return {"last_archived_at": last, "last_archived_wal": status.last_archived_wal,
            "failed_count": status.failed_count, "last_failed_wal": status.last_failed_wal,
            "last_failed_at": status.last_failed_time, "failing": status.failing, "archive_lag_seconds": lag}


def _segments_waiting(conn: Any) -> int:
    """WAL segments completed and not yet archived: their ``.ready`` files in archive_status."""
    from aep_ops.pg.connect import wrap_errors

    with wrap_errors("listing pg_wal/archive_status", conn):
        return int(conn.execute("select count(*) from pg_ls_archive_statusdir()"
                                " where name ~ '^[0-9A-F]{24}\\.ready$'").fetchone()[0])


def _segment_end(walfile: str, segment_size: int) -> int | None:
    """Byte position just past the segment named by ``walfile`` (also NAME.OFFSET.backup);
    None for files that name no segment (TIMELINE.history)."""
    name = walfile[:24]
    if len(name) != 24 or any(c not in "0123456789ABCDEF" for c in name):
        return None
    per_log = 0x100000000 // segment_size
    return (int(name[8:16], 16) * per_log + int(name[16:24], 16) + 1) * segment_size


def check_target(db: locations.LocalDb, target: datetime, *, now: datetime | None = None) -> TargetCheck:
    """Refuse (UsageError, exit 2) every target PostgreSQL would mishandle; return the backup to use."""
    from aep_ops.pg.target import validate_target

    now = now or datetime.now(timezone.utc)
    if not db.cluster.exists():
        raise UsageError(f"no local source cluster at {db.cluster.datadir}; run `inv db.setup` first")
    backups = db.backrest.info()
    archive = archive_facts(db, now=now)
    archived = archive["last_archived_at"]
    earliest = min((b.start for b in backups if not b.error), default=None)
    chosen = validate_target(target, now=now, last_archived_at=archived, earliest_recoverable=earliest,
                             backups=backups)
    lag = archive["archive_lag_seconds"]
    return TargetCheck(target=target, backup_label=chosen.label, backup_stop=chosen.stop,
                       last_archived_at=archived, archive_lag_seconds=lag)
