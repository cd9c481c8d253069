"""The configuration of run metrics, alert rules and heartbeat pings (``metrics:``).

Kept apart from schema.py so each stays small. Every key has a default (aep_ops.metrics.rules
THRESHOLDS, aep_ops.metrics.heartbeat), so none is required."""

from __future__ import annotations

from aep_ops.config.schema import Field, ListOf, Section

ENVIRONMENT_METRICS = Section({
    "heartbeat_url": Field("secret", "healthchecks-style ping URL, pinged on start, success (as is) and"
                                     " failure (/start, /fail appended); {runbook} and {env} are filled in"
                                     " (default: no pings)"),
    "heartbeat_runbooks": ListOf(Field(str), "runbook ids that ping (default: every runbook's real run)"),
    "heartbeat_timeout_seconds": Field(int, "seconds one ping may take (default 5)", minimum=1, maximum=60),
    "drill_max_age_days": Field(int, "alert when no drill passed for this many days (default 8)",
                                minimum=1, maximum=366),
    "backup_max_age_hours": Field(int, "alert when the newest backup is older than this (default 26)",
                                  minimum=1, maximum=24 * 366),
    "cert_min_days": Field(int, "alert when a certificate expires in fewer days (default 14)",
                           minimum=1, maximum=365),
})

TOP_METRICS = Section({
    "dir": Field("path", "where the Prometheus text files go, e.g. node_exporter's textfile directory"
                         " /var/lib/prometheus/node-exporter (default STATE_DIR/metrics)"),
})

ENVIRONMENT_FIELDS = {"metrics": ENVIRONMENT_METRICS}
TOP_FIELDS = {"metrics": TOP_METRICS}
