"""PagerDuty Events API v2: trigger, acknowledge and resolve one alert by its dedup key.

A trigger carries the whole payload (summary cut to PagerDuty's 1,024 characters, source,
severity, component, group, custom details); acknowledge and resolve need only the routing key,
the action and the dedup key. PagerDuty answers 202; 400 is an invalid event (not retried), 429
and 5xx are retried by aep_ops.incident.notify_http within its bounds.
"""

from __future__ import annotations

from typing import Any, Callable

from aep_ops.incident.notify_http import Answer, post_json

NAME = "pagerduty"
SECRET = "routing_key"
DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024


def body(notice: Any, routing_key: str) -> dict[str, Any]:
    """The event for ``notice`` (aep_ops.incident.notify.Notice)."""
    event: dict[str, Any] = {"routing_key": routing_key, "event_action": notice.action, "dedup_key": notice.key}
    if notice.action == "trigger":
        event["payload"] = {
            "summary": cut(notice.summary, SUMMARY_MAX), "source": notice.source, "severity": notice.severity,
            "component": notice.runbook or "aep-ops", "group": notice.env, "class": notice.kind,
            "custom_details": notice.details,
        }
        event["client"] = "aep-ops"
    return event


def attempt_for(notice: Any, section: dict[str, Any], secret: str) -> Callable[[float], Answer]:
    url, event = section.get("url") or DEFAULT_URL, body(notice, secret)
    return lambda timeout: post_json(url, event, {}, timeout)


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"
