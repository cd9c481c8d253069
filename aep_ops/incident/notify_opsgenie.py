"""OpsGenie Alert API: create, acknowledge and close one alert by its alias (the dedup key).

Create is ``POST /v2/alerts`` with the alias, a message of at most 130 characters, a priority
and the details; acknowledge and close are ``POST /v2/alerts/{alias}/acknowledge|close`` with
``identifierType=alias``. The key goes in ``Authorization: GenieKey ...``. OpsGenie answers 202
(the request is queued); 429 and 5xx are retried within aep_ops.incident.notify_http's bounds.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Callable

from aep_ops.incident.notify_http import Answer, post_json
from aep_ops.incident.notify_pagerduty import cut

NAME = "opsgenie"
SECRET = "api_key"
DEFAULT_URL = "https://api.opsgenie.com/v2/alerts"
MESSAGE_MAX = 130
DESCRIPTION_MAX = 15000
PRIORITY = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}
VERB = {"acknowledge": "acknowledge", "resolve": "close"}


def request(notice: Any, section: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(URL, body) of ``notice`` (aep_ops.incident.notify.Notice) against the endpoint of ``section``."""
    base = (section.get("url") or DEFAULT_URL).rstrip("/")
    if notice.action == "trigger":
        return base, {
            "message": cut(notice.summary.splitlines()[0] if notice.summary.strip() else notice.key, MESSAGE_MAX),
            "alias": notice.key, "description": cut(notice.summary, DESCRIPTION_MAX),
            "priority": section.get("priority") or PRIORITY.get(notice.severity, "P3"),
            "source": notice.source, "entity": notice.runbook or notice.env,
            "tags": [t for t in ("aep-ops", notice.env, notice.runbook) if t],
            "details": {k: str(v) for k, v in notice.details.items()},
        }
    alias = urllib.parse.quote(notice.key, safe="")
    return f"{base}/{alias}/{VERB[notice.action]}?identifierType=alias", {
        "source": notice.source, "user": "aep-ops", "note": cut(notice.summary or notice.action, DESCRIPTION_MAX)}


def attempt_for(notice: Any, section: dict[str, Any], secret: str) -> Callable[[float], Answer]:
    url, payload = request(notice, section)
    headers = {"Authorization": f"GenieKey {secret}"}
    return lambda timeout: post_json(url, payload, headers, timeout)
