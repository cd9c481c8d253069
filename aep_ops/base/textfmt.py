"""Text for people: one line of a many-line message, a Markdown table cell, a duration or a size in
human units.

Every renderer goes through these, so that a PostgreSQL error with DETAIL and HINT lines never
splits a table or a column, and an objective of 14400 seconds reads "4 h". JSON keeps the raw values.
"""

from __future__ import annotations

import math
from typing import Any

from aep_ops.base.redact import redact

STEP_LINE_WIDTH = 100  # columns of a step line on a terminal; the whole text is in the journal and the result
ELLIPSIS = "..."  # ASCII: a timer's journal or a chat client may not be UTF-8


def lines(text: Any) -> list[str]:
    """The non-blank lines of ``text``, right-stripped (None is no lines)."""
    if text is None:
        return []
    return [line.rstrip() for line in str(text).splitlines() if line.strip()]


def one_line(text: Any, limit: int | None = None) -> str:
    """The first line of ``text`` plus "(+N lines)" when there are more, at most ``limit`` characters."""
    found = lines(text)
    if not found:
        return ""
    more = len(found) - 1
    suffix = f" (+{more} line{'' if more == 1 else 's'})" if more else ""
    first = found[0].strip()
    if limit is not None and len(first) + len(suffix) > limit:
        # Masked before the cut: half a secret is no longer a registered value, and would be shown.
        first = redact(first)
    if limit is not None and len(first) + len(suffix) > limit:
        keep = max(limit - len(suffix) - len(ELLIPSIS), 1)
        first = first[:keep].rstrip() + ELLIPSIS
    return first + suffix


def flat(text: Any) -> str:
    """All of ``text`` on one line: its lines joined with " / " (for a message that must stay one line
    and whole, such as the final line of a run read by a timer)."""
    return " / ".join(line.strip() for line in lines(text))


def table_cell(text: Any) -> str:
    """``text`` as one Markdown (GFM) table cell: line breaks become ``<br>``, and ``|``, ``\\``, ``<``,
    ``>`` and ``&`` are escaped, so no message can add a column, end the row, or open an HTML tag."""
    escaped = []
    for line in lines(text):
        line = line.replace("\\", "\\\\").replace("|", "\\|")
        escaped.append(line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return "<br>".join(escaped)


_UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: Any) -> str:
    """Seconds as a person reads them: "0.4 s", "12 s", "15 min", "2 h 5 min", "1 d 3 h".

    Under 10 s one decimal; under a minute whole seconds; above, the two largest units, the smaller
    one rounded (so 3599.7 s is "1 h", not "59 min 60 s"). None (not measured) is "n/a"."""
    if seconds is None:
        return "n/a"
    value = float(seconds)
    if math.isnan(value) or math.isinf(value):
        return "n/a"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if round(value, 1) < 10:
        return f"{sign}{value:.1f} s"
    if round(value) < 60:
        return f"{sign}{value:.0f} s"
    for index, (name, size) in enumerate(_UNITS[:-1]):
        small_name, small = _UNITS[index + 1]
        total = round(value / small) * small  # rounded to the smaller unit first: 3599.7 s -> 3600 s
        if total >= size:
            big, rest = divmod(total, size)
            return f"{sign}{big} {name}" + (f" {rest // small} {small_name}" if rest else "")
    return f"{sign}{round(value)} s"  # pragma: no cover - 60 s and more always match a unit above


_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(value: Any) -> str:
    """Bytes as a person reads them: 1536 -> "1.5 KiB"; whole bytes below 1 KiB, one decimal below 10
    of a unit."""
    amount = max(0.0, float(value))
    for unit in _SIZE_UNITS:
        if amount < 1024 or unit == _SIZE_UNITS[-1]:
            if unit == "B":
                return f"{int(amount)} B"
            return f"{amount:.1f} {unit}" if amount < 10 else f"{amount:.0f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def step_status(status: str, check: bool) -> str:
    """The word a person reads for a step's outcome: a check (a soft step, or any step of a read-only
    runbook) that found nothing to change "passed"; the journal and JSON keep "unchanged"."""
    if check and status == "unchanged":
        return "passed"
    return status
