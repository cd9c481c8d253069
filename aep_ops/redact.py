"""Masking of secret values wherever text leaves the process.

Every secret resolved through ``aep_ops.secrets`` registers its value here; log
events, journal records, exception messages and reports pass through ``redact``.
Masking by value (not by key name) is what catches a password inside a DSN, an error
message or a command line. The registry is process-wide on purpose: a secret resolved
anywhere in this process must be masked everywhere in it.
"""

from __future__ import annotations

import threading
from typing import Any

MASK = "****"
_MIN_LENGTH = 4  # shorter values would mask ordinary words; refuse to treat them as secrets

_lock = threading.Lock()
_values: set[str] = set()


def register(value: str) -> None:
    """Remember a secret value so that it is masked from now on."""
    if not isinstance(value, str) or len(value) < _MIN_LENGTH:
        return
    with _lock:
        _values.add(value)
        for line in value.splitlines():  # a multi-line secret (a key file) leaks line by line
            if len(line.strip()) >= 8:
                _values.add(line.strip())


def redact(text: str) -> str:
    """Return ``text`` with every registered secret value replaced by ``****``."""
    if not _values or not isinstance(text, str):
        return text
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_obj(obj: Any) -> Any:
    """Redact strings inside nested dicts, lists and tuples (for JSON records)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v) for v in obj)
    return obj


def forget_all() -> None:
    """Clear the registry (tests only)."""
    with _lock:
        _values.clear()
