"""The time of a log line, for the manifest's first/last timestamps and logs.fetch's window:
JSON lines (pino's epoch milliseconds ``time``, ``timestamp``, ``ts``, ``@timestamp``), nginx's
``[07/Dec/2026:14:20:44 +0000]``, and lines that start with an ISO-8601 or PostgreSQL stamp."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_JSON = re.compile(r'"(?:time|timestamp|ts|@timestamp)"\s*:\s*(?:"([^"]+)"|(\d+(?:\.\d+)?))')
_NGINX = re.compile(r"\[(\d{2}/[A-Za-z]{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]")
_LEADING = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s*(Z|UTC|[+-]\d{2}:?\d{2})?")


def line_time(line: str) -> float | None:
    """Seconds since the epoch, or None when the line carries no time aep-ops can read."""
    match = _JSON.search(line)
    if match:
        return _iso(match[1]) if match[1] else _epoch(float(match[2]))
    match = _NGINX.search(line)
    if match:
        try:
            return datetime.strptime(match[1], "%d/%b/%Y:%H:%M:%S %z").timestamp()
        except ValueError:
            return None
    match = _LEADING.match(line)
    if match:
        zone = match[2] or "Z"
        return _iso(match[1].replace(" ", "T") + ("+00:00" if zone in ("Z", "UTC") else zone))
    return None


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(value: float) -> float:
    return value / 1000 if value > 1e11 else value  # pino writes milliseconds


def _iso(text: str) -> float | None:
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()
