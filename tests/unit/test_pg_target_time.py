"""``format_target_time``: the recovery target pgBackRest writes into recovery_target_time. It must
keep every microsecond (PostgreSQL compares commit times to the microsecond, so a rounded target
keeps or drops a commit made a fraction of a millisecond away) and always carry an explicit UTC
offset (without one PostgreSQL reads it in the restored cluster's timezone)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from aep_ops.base.errors import UsageError
from aep_ops.pg.pgbackrest import format_target_time

UTC = timezone.utc


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (datetime(2026, 11, 26, 9, 41, 0, tzinfo=UTC), "2026-11-26 09:41:00.000000+00"),
        (datetime(2026, 11, 26, 9, 41, 0, 1, tzinfo=UTC), "2026-11-26 09:41:00.000001+00"),
        (datetime(2026, 11, 26, 9, 41, 59, 999999, tzinfo=UTC), "2026-11-26 09:41:59.999999+00"),
        (datetime(2026, 11, 26, 9, 41, 0, 250000, tzinfo=UTC), "2026-11-26 09:41:00.250000+00"),
        # offsets are converted to UTC, sub-hour ones and across midnight, the fraction kept
        (datetime(2026, 11, 26, 15, 11, 0, 500, tzinfo=timezone(timedelta(hours=5, minutes=30))),
         "2026-11-26 09:41:00.000500+00"),
        (datetime(2026, 11, 25, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-5))),
         "2026-11-26 04:30:00.123456+00"),
        (datetime(2027, 1, 1, 0, 15, 0, 7, tzinfo=timezone(timedelta(hours=1))), "2026-12-31 23:15:00.000007+00"),
        # a named zone on both sides of a DST change (New York: -05:00 in winter, -04:00 in summer)
        (datetime(2026, 1, 15, 4, 41, 0, 42, tzinfo=ZoneInfo("America/New_York")), "2026-01-15 09:41:00.000042+00"),
        (datetime(2026, 7, 15, 5, 41, 0, 42, tzinfo=ZoneInfo("America/New_York")), "2026-07-15 09:41:00.000042+00"),
    ],
)
def test_format_target_time_is_utc_with_every_microsecond(when, expected):
    assert format_target_time(when) == expected


@pytest.mark.parametrize("micro", [0, 1, 499, 500, 999, 1000, 499999, 500000, 999999])
def test_format_target_time_reads_back_as_the_same_instant(micro):
    """What PostgreSQL parses is the same instant: no rounding, no truncation, no zone shift."""
    when = datetime(2026, 11, 26, 4, 11, 0, micro, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    text = format_target_time(when)
    assert datetime.fromisoformat(text) == when
    assert datetime.fromisoformat(text).utcoffset() == timedelta(0)


def test_format_target_time_refuses_a_time_without_offset():
    with pytest.raises(UsageError, match="has no UTC offset"):
        format_target_time(datetime(2026, 11, 26, 9, 41, 0, 250000))
