"""The configuration of releases (``release:`` of an environment): the ALB listener whose weighted
forward is moved between the blue and green target groups, and the canary's gates. Kept apart
from schema.py so each stays small; the defaults are in aep_ops.release.settings."""

from __future__ import annotations

from aep_ops.config.schema import DAY, Field, ListOf, Section

COLOURS = Section({
    "blue": Field(str, "ARN of the blue target group"),
    "green": Field(str, "ARN of the green target group"),
}, help="the two target groups the listener forwards to")

RELEASE = Section({
    "listener_arn": Field(str, "ARN of the ALB listener whose default action forwards to blue and green"),
    "target_groups": COLOURS,
    "alarms": ListOf(Field(str), "CloudWatch alarm names that gate a canary step and must not be in ALARM"),
    "metric_lag_seconds": Field(int, "how late a metric reaches its alarm (default 60)", minimum=0, maximum=3600),
    "metrics_endpoint": Field(str, "where each target serves Prometheus metrics, e.g. /metrics (default)"),
    "health_endpoint": Field(str, "where each target answers its health check directly, e.g. /healthz"
                                  " (default: none, the load balancer's target health only)"),
    "requests_metric": Field(str, "counter of the application's requests (default http_requests_total)"),
    "status_label": Field(str, "label of that counter holding the HTTP status (default code)"),
    "min_requests": Field(int, "requests the canary must serve in a step before its error rate counts"
                               " (default 100); fewer is inconclusive, never a pass", minimum=1, maximum=10**9),
    "max_error_permille": Field(int, "5xx answers per 1000 requests above which the canary fails (default 10)",
                                minimum=0, maximum=1000),
    "lease_seconds": Field(int, "how long a canary may go unheard from before release.watchdog rolls it back"
                                " (default 300)", minimum=10, maximum=DAY),
    "max_stickiness_seconds": Field(int, "cap on target group stickiness while traffic shifts (default 60)",
                                    minimum=1, maximum=7 * DAY),
    "health_timeout": Field(int, "seconds the new colour's targets have to be healthy (default 300)",
                            minimum=1, maximum=DAY),
    "slack_webhook": Field("secret", "Slack incoming webhook told of every automatic rollback"),
})

ENVIRONMENT_FIELDS = {"release": RELEASE}
