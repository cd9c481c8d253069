"""Validation of a point-in-time recovery target (pure logic, no I/O).

PostgreSQL 15 is forgiving in the wrong places: a target without a UTC offset is read in
the restored cluster's timezone, and a target earlier than the end of the chosen base
backup is silently replaced by the backup's consistent point. These checks refuse such
targets before anything is restored, each with one line that says what to do instead.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from aep_ops.base.errors import UsageError
from aep_ops.pg.pgbackrest import Backup
from aep_ops.base.timefmt import EXAMPLE_TARGET as EXAMPLE, ago, aware_utc, utc_z

# pgBackRest records backup stop times in whole seconds: the real end of a backup can be
# up to a second after the recorded one, so a backup counts only if it ended this much
# before the target.
STOP_RESOLUTION = timedelta(seconds=1)


def parse_target_time(text: str) -> datetime:
    """ISO 8601 time with an explicit ``Z`` or ``+HH:MM`` offset -> aware UTC datetime."""
    raw = (text or "").strip()
    if not raw:
        raise UsageError(f"target time is empty; give an ISO 8601 time with a UTC offset, e.g. {EXAMPLE}")
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"target time {raw!r} is not an ISO 8601 time; use e.g. {EXAMPLE}") from None
    return aware_utc(parsed, shown=raw)


def validate_target(
    target: datetime,
    *,
    now: datetime,
    last_archived_at: datetime | None,
    earliest_recoverable: datetime | None,
    backups: Sequence[Backup],
) -> Backup:
    """Return the backup to restore for ``target``, or raise UsageError saying why not.

    ``last_archived_at`` is ``pg_stat_archiver.last_archived_time`` on the source: WAL
    written after it is not in the archive, so recovery could not reach a later target.
    ``earliest_recoverable`` is the oldest point the retained backups and WAL cover
    (None: only the backups' own ends limit the target).
    """
    for name, value in (("target", target), ("now", now), ("last_archived_at", last_archived_at),
                        ("earliest_recoverable", earliest_recoverable)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
    usable = sorted((b for b in backups if not b.error), key=lambda b: b.stop)
    if not usable:
        raise UsageError("no usable backup in the repository; take a full backup first")
    t = utc_z(target)
    if target > now:
        raise UsageError(f"target {t} is in the future (now {utc_z(now)}); pick a time in the past")
    if last_archived_at is None:
        raise UsageError(f"target {t} cannot be reached: no WAL has been archived yet; check archive_command")
    if target >= last_archived_at:
        raise UsageError(
            f"target {t} is after the last archived WAL ({utc_z(last_archived_at)}, the archive is "
            f"{ago(target - last_archived_at)} behind the target); run select pg_switch_wal() on the source "
            "or wait for archive_timeout, then retry"
        )
    if earliest_recoverable is not None and target < earliest_recoverable:
        raise UsageError(
            f"target {t} is before the earliest recoverable point {utc_z(earliest_recoverable)}; "
            "nothing older is retained"
        )
    chosen = [b for b in usable if b.stop + STOP_RESOLUTION <= target]
    if not chosen:
        raise UsageError(
            f"target {t} is not after the end of any backup (earliest ends {utc_z(usable[0].stop)}); "
            "PostgreSQL 15 would silently recover to the backup's end instead; pick a later target"
        )
    return chosen[-1]
