"""PITR target validation: every refusal, and which backup a valid target picks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from aep_ops.base.errors import UsageError
from aep_ops.pg.pgbackrest import Backup
from aep_ops.pg.target import parse_target_time, validate_target

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def at(hh: int, mm: int = 0, ss: int = 0, us: int = 0) -> datetime:
    return datetime(2026, 11, 26, hh, mm, ss, us, tzinfo=UTC)


def backup(label: str, start: datetime, stop: datetime, **kw) -> Backup:
    return Backup(label=label, type="full", start=start, stop=stop, **kw)


B1 = backup("B1", at(8), at(8, 5))
B2 = backup("B2", at(10), at(10, 5))
BROKEN = backup("BX", at(11), at(11, 5), error=True)
BACKUPS = [B2, BROKEN, B1]  # unsorted on purpose
LAST_ARCHIVED = at(11, 59)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T09:41:00Z", at(9, 41)),
        ("2026-11-26 09:41:00+00:00", at(9, 41)),
        ("2026-11-26T10:41:00+01:00", at(9, 41)),
        ("2026-11-26T04:11:00-05:30", at(9, 41)),
        ("  2026-11-26T09:41:00.250000Z ", at(9, 41, 0, 250000)),
        ("2026-11-26T09:41:00+0000", at(9, 41)),
    ],
)
def test_parse_target_time_accepts_explicit_offsets_and_returns_utc(text, expected):
    parsed = parse_target_time(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-11-26T09:41:00", r"has no UTC offset; add Z or \+HH:MM, e\.g\. 2026-11-26T09:41:00Z"),
        ("2026-11-26 09:41", "has no UTC offset"),
        ("2026-11-26", "has no UTC offset"),
        ("yesterday at nine", "not an ISO 8601 time"),
        ("2026-13-40T99:00:00Z", "not an ISO 8601 time"),
        ("", "is empty"),
    ],
)
def test_parse_target_time_refuses(text, message):
    with pytest.raises(UsageError, match=message):
        parse_target_time(text)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (at(9), "B1"),                      # between backups: the older one
        (at(8, 5, 1), "B1"),                # one second after B1's recorded stop
        (at(10, 5, 1), "B2"),               # just after B2
        (at(11, 30), "B2"),                 # after the broken backup: it is never chosen
        (LAST_ARCHIVED - timedelta(microseconds=1), "B2"),
    ],
)
def test_validate_target_chooses_newest_backup_that_ended_before_target(target, expected):
    chosen = validate_target(target, now=NOW, last_archived_at=LAST_ARCHIVED, earliest_recoverable=None,
                             backups=BACKUPS)
    assert chosen.label == expected


@pytest.mark.parametrize(
    ("target", "last_archived", "earliest", "backups", "message"),
    [
        (NOW + timedelta(seconds=1), LAST_ARCHIVED, None, BACKUPS, r"is in the future \(now 2026-11-26T12:00:00Z\)"),
        (at(11, 59, 30), LAST_ARCHIVED, None, BACKUPS,
         r"after the last archived WAL \(2026-11-26T11:59:00Z, the archive is 30s behind the target\).*pg_switch_wal"),
        (LAST_ARCHIVED, LAST_ARCHIVED, None, BACKUPS, "after the last archived WAL"),
        (at(11), None, None, BACKUPS, "no WAL has been archived yet"),
        (at(9), LAST_ARCHIVED, at(9, 30), BACKUPS, "before the earliest recoverable point 2026-11-26T09:30:00Z"),
        (at(7), LAST_ARCHIVED, None, BACKUPS, "PostgreSQL 15 would silently recover to the backup's end"),
        (at(8, 2), LAST_ARCHIVED, None, BACKUPS, "not after the end of any backup"),  # inside B1
        (at(8, 5), LAST_ARCHIVED, None, BACKUPS, "not after the end of any backup"),  # at B1's recorded stop
        # pgBackRest stop times have 1 s resolution: 0.9 s after the recorded stop is not enough
        (at(8, 5, 0, 900000), LAST_ARCHIVED, None, BACKUPS, "not after the end of any backup"),
        (at(11), LAST_ARCHIVED, None, [], "no usable backup"),
        (at(11), LAST_ARCHIVED, None, [BROKEN], "no usable backup"),
    ],
)
def test_validate_target_refuses(target, last_archived, earliest, backups, message):
    with pytest.raises(UsageError, match=message) as caught:
        validate_target(target, now=NOW, last_archived_at=last_archived, earliest_recoverable=earliest, backups=backups)
    assert "\n" not in str(caught.value), "each refusal is one line"


def test_validate_target_reports_long_archive_lag_in_hours():
    with pytest.raises(UsageError, match=r"the archive is 2h30m behind the target"):
        validate_target(at(11, 30), now=NOW, last_archived_at=at(9), earliest_recoverable=None, backups=BACKUPS)


def test_validate_target_rejects_naive_datetimes_from_callers():
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_target(datetime(2026, 11, 26, 9), now=NOW, last_archived_at=LAST_ARCHIVED,
                        earliest_recoverable=None, backups=BACKUPS)
