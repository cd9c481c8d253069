"""Turning strings into bounded numbers: one parser for every front door.

``number`` is the one place a numeric flag is parsed and bounded: plain tasks call it with their
bounds, the engine (``engine.runner``) with each runbook parameter's ``Param.bounds``, whichever
front door (CLI, timer, chat) supplied the value.
"""

from __future__ import annotations

import math
from typing import Any

WORDS = {int: "a whole number", float: "a number"}


def number(flag: str, value: object, kind: type, *, default: Any = None, what: str | None = None,
           minimum: float | None = None, maximum: float | None = None, above: float | None = None) -> Any:
    """A numeric flag (invoke hands over strings) as ``kind`` (int or float); None or "" is ``default``.

    ``minimum``/``maximum`` are inclusive bounds, ``above`` an exclusive lower one (a timeout
    above 0). NaN and infinity are never a number here. A bad value is one line naming the flag
    and the range (UsageError, exit 2), e.g. ``--scale -3: expected a whole number from 0 to 1000``."""
    from aep_ops.config.schema import describe_range, preview_text, show_number
    from aep_ops.base.errors import UsageError

    if value is None or value == "":
        return default
    expected = f"expected {what or WORDS.get(kind, 'a number')}"
    if above is not None:
        expected += f" above {show_number(above)}" + (f" and at most {show_number(maximum)}" if maximum is not None else "")
    elif minimum is not None or maximum is not None:
        expected += f" {describe_range(minimum, maximum)}"
    shown = preview_text(value if isinstance(value, str) else repr(value))
    parsed = _parse(value, kind)
    if parsed is None or (kind is float and not math.isfinite(parsed)):
        raise UsageError(f"{flag} {shown}: {expected}")
    if ((minimum is not None and parsed < minimum) or (maximum is not None and parsed > maximum)
            or (above is not None and parsed <= above)):
        raise UsageError(f"{flag} {shown}: {expected}")
    return parsed


def _parse(value: object, kind: type) -> Any:
    """``value`` as ``kind``, or None: a bool is not a number, a float is not a whole number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, kind):
        return value
    if kind is int and isinstance(value, float):
        return int(value) if value.is_integer() else None
    try:
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
