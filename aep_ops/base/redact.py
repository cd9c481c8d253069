"""Masking of secret values wherever text leaves the process.

Every secret resolved through ``aep_ops.base.secrets`` registers its value here; log
events, journal records, exception messages and reports pass through ``redact``.
Masking by value (not by key name) is what catches a password inside a DSN, an error
message or a command line. The registry is process-wide on purpose: a secret resolved
anywhere in this process must be masked everywhere in it.

Structures are masked before they are serialized (``redact_obj``, ``dumps``), never the
serialized text: JSON escapes a secret holding ``"``, ``\\`` or a non-ASCII letter, and
the escaped form no longer matches the value. Text that arrives already serialized (an
exception whose ``str`` is a ``repr``, as a KeyError's is; a traceback) is caught because each
secret is registered in every spelling a serializer gives it (``spellings``). And a value
that could be mistaken for the text around it (``true``, ``info``, a short word) can be
neither masked safely nor left visible: ``unsafe_reason`` says so, and the resolver refuses
such a secret.
"""

from __future__ import annotations

import dataclasses
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
        _values.update(spellings(value))
        for line in value.splitlines():  # a multi-line secret (a key file) leaks line by line
            if len(line.strip()) >= MIN_LENGTH and not unsafe_reason(line.strip()):
                _values.update(spellings(line.strip()))
        _ordered = tuple(sorted(_values, key=len, reverse=True))
    return True


def spellings(value: str) -> set[str]:
    """``value`` as each serialisation spells it inside a larger text: JSON (ASCII-escaped, and with
    ``ensure_ascii=False``), ``repr`` and ``ascii`` (an exception's ``str`` is often a repr:
    ``KeyError``, a dict), each with both of repr's quote choices (a text holding both quotes escapes
    ``'``), and the JSON of those reprs. Masking structures before they are serialised catches the
    JSON we write; these catch text that was serialised before it reached us (a traceback, a
    library's message), which no masking of the structure can see."""
    both_quotes = "'\""  # appended, they force repr to escape a single quote; cut off again below
    quoted = {repr(value)[1:-1], repr(value + both_quotes)[1:-4], ascii(value)[1:-1], ascii(value + both_quotes)[1:-4]}
    forms = {value, *quoted}
    for text in (value, *quoted):
        forms.update((json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]))
    return forms


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
    """Redact the strings inside nested dicts (keys too), lists, tuples, sets and dataclass
    instances (a masked copy: a run's result keeps its type for the renderers). Other objects
    (paths, datetimes, exceptions) become their ``str`` first, as JSON would write them, so
    that what is masked is what is written."""
    if isinstance(obj, str):
        return redact(obj)
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: redact_obj(getattr(obj, f.name))
                                           for f in dataclasses.fields(obj) if f.init})
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
