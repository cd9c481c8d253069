"""Masking of secret values wherever text leaves the process.

Every secret resolved through ``aep_ops.secrets`` registers its value here; log
events, journal records, exception messages and reports pass through ``redact``.
Masking by value (not by key name) is what catches a password inside a DSN, an error
message or a command line. The registry is process-wide on purpose: a secret resolved
anywhere in this process must be masked everywhere in it.

Structures are masked before they are serialized (``redact_obj``, ``dumps``), never the
serialized text: JSON escapes a secret holding ``"``, ``\\`` or a non-ASCII letter, and
the escaped form no longer matches the value. And a value that could be mistaken for the
text around it (``true``, ``info``, a short word) can be neither masked safely nor left
visible: ``unsafe_reason`` says so, and the resolver refuses such a secret.
"""

from __future__ import annotations

import json
import threading
from typing import Any

MASK = "****"
MIN_LENGTH = 8  # a shorter value is as likely to be part of ordinary output as a secret
# Words aep-ops itself writes (JSON literals, log levels, run and step states, defaults):
# masking one of them would corrupt every record that carries it.
COMMON_WORDS = frozenset({
    "true", "false", "null", "none", "debug", "info", "warning", "error", "critical",
    "running", "succeeded", "failed", "interrupted", "unchanged", "changed", "planned", "pending",
    "password", "postgres", "postgresql", "localhost", "changeme", "12345678", "123456789",
    "verification_failed", "aep-source",
})

_lock = threading.Lock()
_values: set[str] = set()
_ordered: tuple[str, ...] = ()


def unsafe_reason(value: str) -> str | None:
    """Why ``value`` cannot be masked safely (None when it can)."""
    if len(value) < MIN_LENGTH:
        return f"it is {len(value)} characters long; at least {MIN_LENGTH} are needed"
    if value.strip().lower() in COMMON_WORDS:
        return "it is a common word that aep-ops itself writes in its output"
    if not value.strip():
        return "it is blank"
    return None


def register(value: str) -> bool:
    """Remember a secret value so that it is masked from now on; False when it is unsafe to mask
    (``unsafe_reason``): the caller decides whether that is an error."""
    global _ordered
    if not isinstance(value, str) or unsafe_reason(value):
        return False
    with _lock:
        _values.add(value)
        for line in value.splitlines():  # a multi-line secret (a key file) leaks line by line
            if len(line.strip()) >= MIN_LENGTH and not unsafe_reason(line.strip()):
                _values.add(line.strip())
        _ordered = tuple(sorted(_values, key=len, reverse=True))
    return True


def redact(text: str) -> str:
    """Return ``text`` with every registered secret value replaced by ``****``."""
    values = _ordered
    if not values or not isinstance(text, str):
        return text
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_obj(obj: Any) -> Any:
    """Redact the strings inside nested dicts (keys too), lists, tuples and sets. Other objects
    (paths, datetimes, exceptions) become their ``str`` first, as JSON would write them, so
    that what is masked is what is written."""
    if isinstance(obj, str):
        return redact(obj)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, dict):
        return {redact_obj(k) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj
        masked = [redact_obj(v) for v in items]
        return tuple(masked) if type(obj) is tuple else masked  # a named tuple is written as a list, as JSON does
    return redact(str(obj))


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``obj`` with every secret masked in the values, before escaping."""
    return json.dumps(redact_obj(obj), default=str, **kwargs)


def forget_all() -> None:
    """Clear the registry (tests only)."""
    global _ordered
    with _lock:
        _values.clear()
        _ordered = ()
