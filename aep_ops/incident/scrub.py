"""Masking for what a diagnosis copies off other machines. Secrets aep-ops resolved are masked
by value (aep_ops.base.redact); but a host's log line or another session's query can carry a
secret aep-ops never saw: a password in a DSN, a bearer token, an AWS key, a Slack webhook.
Those are masked by shape here, before anything is written to the bundle or shown."""

from __future__ import annotations

import re
from typing import Any

from aep_ops.base.redact import MASK, redact

_SHAPES = [
    # key=value and key: value for the usual names (password, secret, token, api key, ...)
    (re.compile(r"(?i)((?:password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
                r"client[_-]?secret|authorization|auth)[\"']?\s*[=:]\s*[\"']?)(?:Bearer\s+|Basic\s+|GenieKey\s+)?"
                r"[^\s\"',;&]+"), r"\1" + MASK),
    (re.compile(r"(?i)\b(Bearer|Basic|GenieKey|Token)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),  # scheme://user:pw@
    (re.compile(r"https://hooks\.slack\.com/[^\s\"']+"), "https://hooks.slack.com/" + MASK),
    (re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), MASK),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), MASK),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"), MASK),
    (re.compile(r"(?i)(PASSWORD\s+)'[^']*'"), r"\1'" + MASK + "'"),  # ALTER ROLE ... PASSWORD '...'
]


def scrub(text: str) -> str:
    """``text`` with known secrets and secret-shaped values masked."""
    text = redact(text)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def scrub_obj(obj: Any) -> Any:
    """Every string in a JSON-like structure scrubbed (before it is serialised: see base.redact)."""
    if isinstance(obj, str):
        return scrub(obj)
    if isinstance(obj, dict):
        return {scrub_obj(k) if isinstance(k, str) else k: scrub_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_obj(v) for v in obj]
    return obj
