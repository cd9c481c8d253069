"""The configuration of notifications (``notify:`` of an environment): PagerDuty (Events API v2),
OpsGenie (Alert API) and a Slack incoming webhook, how hard to try, and which runbooks page on
their own failure. Every secret is a reference resolved at the moment of sending; the defaults
are in aep_ops.incident.notify."""

from __future__ import annotations

from aep_ops.config.schema import Field, ListOf, Section

SEVERITIES = ("critical", "error", "warning", "info")

PAGERDUTY = Section({
    "routing_key": Field("secret", "Events API v2 integration key of the PagerDuty service (a reference)"),
    "url": Field(str, "Events API v2 endpoint (default https://events.pagerduty.com/v2/enqueue)"),
    "severity": Field(SEVERITIES, "severity of an automatic page (default critical)"),
}, help="PagerDuty Events API v2: trigger, acknowledge and resolve by dedup key")

OPSGENIE = Section({
    "api_key": Field("secret", "API key of an OpsGenie API integration, sent as GenieKey (a reference)"),
    "url": Field(str, "Alert API endpoint (default https://api.opsgenie.com/v2/alerts; EU:"
                      " https://api.eu.opsgenie.com/v2/alerts)"),
    "priority": Field(("P1", "P2", "P3", "P4", "P5"), "priority of every alert (default: from the severity,"
                                                      " critical P1, error P2, warning P3, info P5)"),
}, help="OpsGenie Alert API: create, acknowledge and close by alias")

SLACK = Section({
    "webhook": Field("secret", "Slack incoming webhook URL (a reference: the URL is the credential)"),
}, help="a Slack channel told of every page and every resolution")

NOTIFY = Section({
    "pagerduty": PAGERDUTY,
    "opsgenie": OPSGENIE,
    "slack": SLACK,
    "timeout_seconds": Field(int, "seconds one request may take (default 5)", minimum=1, maximum=60),
    "retries": Field(int, "retries after a first failed attempt, on 429, 5xx, timeouts and refused"
                          " connections (default 2)", minimum=0, maximum=10),
    "deadline_seconds": Field(int, "seconds all attempts to one channel may take together (default 15);"
                                   " channels are tried side by side", minimum=1, maximum=300),
    "on_failure": ListOf(Field(str), "runbook ids whose failure on this environment pages by itself and whose"
                                     " next success resolves that page, or the one word all (default: none)"),
}, help="who is told, and how, when a runbook fails or someone runs incident.notify")

ENVIRONMENT_FIELDS = {"notify": NOTIFY}
