"""Times and durations the way on-call messages show them: UTC with a Z, and 3m05s; and the one
rule every recovery target obeys (an explicit UTC offset); spans typed as flags (5m, 30s)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from aep_ops.base.errors import UsageError

EXAMPLE_TARGET = "2026-11-26T09:41:00Z"


def aware_utc(when: datetime, *, shown: str | None = None) -> datetime:
    """``when`` in UTC, refusing a time without a UTC offset: PostgreSQL would read such a target in
    the restored cluster's timezone, RDS in UTC. ``shown``: how the user wrote it, for the message."""
    if when.tzinfo is None or when.utcoffset() is None:
        written = repr(shown) if shown is not None else when.isoformat()
        raise UsageError(f"target time {written} has no UTC offset; add Z or +HH:MM, e.g. {EXAMPLE_TARGET}")
    return when.astimezone(timezone.utc)


def iso_from_timestamp(ts: float) -> str:
    """A ``time.time()`` value as ISO 8601 UTC (with +00:00, as the journal and restore markers store it)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def utc_z(when: datetime) -> str:
    """UTC ISO 8601 with a Z; whole seconds unless the time has a fraction (then milliseconds)."""
    spec = "seconds" if when.microsecond == 0 else "milliseconds"
    return when.astimezone(timezone.utc).isoformat(timespec=spec).replace("+00:00", "Z")


def ago(delta: timedelta) -> str:
    """A duration in the largest sensible units: 45s, 3m05s, 2h10m, 3d04h."""
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


_SPAN = re.compile(r"^\s*(\d{1,7})\s*(ms|s|m|min|h|d)?\s*$")
_SPAN_SECONDS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_span(flag: str, text: Any, *, minimum: float = 0, maximum: float = 7 * 86400) -> float:
    """``5m``, ``30s``, ``1h``, ``250ms`` or plain seconds -> seconds; UsageError names the flag.
    One rule for every flag that takes a span (--step-wait, --since), so they read alike."""
    match = _SPAN.match(str(text))
    if not match:
        raise UsageError(f"{flag} {str(text)[:40]!r}: expected a span such as 30s, 5m, 1h or 250ms")
    seconds = int(match[1]) * _SPAN_SECONDS[match[2]]
    if not minimum <= seconds <= maximum:
        raise UsageError(f"{flag} {str(text)[:40]!r}: must be between {minimum:g} s and {maximum:g} s")
    return seconds


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso_ms(moment: datetime) -> str:
    """UTC ISO 8601 to the millisecond: rows compared as text (expiry columns) sort as times."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
