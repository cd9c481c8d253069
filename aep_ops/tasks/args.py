"""Turning command-line strings into typed values: one parser for every front door."""

from __future__ import annotations

from typing import Any


def number(flag: str, value: object, kind: type, *, default: Any = None, what: str = "a number") -> Any:
    """A numeric flag (invoke hands over strings) as ``kind``; None or "" is ``default``; a bad
    value is one line naming the flag (UsageError, exit 2)."""
    from aep_ops.errors import UsageError

    if value is None or value == "":
        return default
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{flag} {value!r}: expected {what}") from None
