"""AWS as the platform's control plane sees it: ALB target health, CloudWatch alarms in ALARM,
recent RDS events, recent Auto Scaling activities. Each read stands alone (one that fails makes
the source partial, the others still count); clients get few attempts and a read timeout
within the deadline, so a throttled or unreachable API cannot hold the diagnosis."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from aep_ops.base.errors import AepError
from aep_ops.base.redact import redact
from aep_ops.incident.model import CRITICAL, INFO, OK, PARTIAL, SKIPPED, WARNING, Finding, SourceResult
from aep_ops.incident.settings import IncidentConfig

RDS_TROUBLE = ("failure", "failover", "low storage", "recovery", "notification")
MAX_ITEMS = 50


class AwsSource:
    name = "aws"

    def __init__(self, settings: Any, cfg: IncidentConfig, *, since_seconds: float, hosts: list[Any] = ()) -> None:
        self.settings, self.cfg, self.since_seconds = settings, cfg, since_seconds
        self.hosts = {h.instance_id: h for h in hosts if h.instance_id}  # a target's host and role, when known
        self.instance = (settings.env.get("rds") or {}).get("instance_id")

    def collect(self, deadline_at: float) -> SourceResult:
        if not self.settings.env.get("aws"):
            return SourceResult(self.name, SKIPPED, error=f"no aws: section for {self.cfg.env_name}")
        since = datetime.now(timezone.utc) - timedelta(seconds=self.since_seconds)
        out = SourceResult(self.name, OK)
        reads: list[tuple[str, Callable[..., Any]]] = [("target_health", self._target_health),
                                                       ("alarms", self._alarms)]
        if self.instance:
            reads.append(("rds_events", self._rds_events))
        if self.cfg.auto_scaling_groups:
            reads.append(("scaling_activities", self._scaling))
        for key, read in reads:
            left = deadline_at - time.monotonic()
            if left <= 0.2:
                out.status, out.error = PARTIAL, f"deadline reached before {key} was read"
                break
            try:
                out.data[key] = read(max(1.0, left), since)
            except AepError as exc:
                out.status = PARTIAL
                out.data[key] = None
                out.error = "; ".join(filter(None, [out.error, f"{key}: {redact(str(exc))}"]))
        out.findings = self._findings(out.data)
        out.raw = {"aws.json": _json(out.data)}
        return out

    def abort(self) -> None:
        """Each call ends by its client's read timeout (set within the deadline)."""

    def _client(self, service: str, timeout: float) -> Any:
        from aep_ops.aws.clients import client

        return client(self.settings, service, max_attempts=2, connect_timeout=min(3.0, timeout),
                      read_timeout=timeout)

    def _target_health(self, timeout: float, since: datetime) -> list[dict[str, Any]]:
        from aep_ops.aws.clients import aws_errors

        elbv2 = self._client("elbv2", timeout)
        rows = []
        for arn in self.cfg.target_groups:
            with aws_errors(elbv2, "reading target health", resource=arn):
                answer = elbv2.describe_target_health(TargetGroupArn=arn)
            for item in answer.get("TargetHealthDescriptions", []):
                health = item.get("TargetHealth") or {}
                rows.append({"target_group": arn, "target": item["Target"]["Id"],
                             "port": item["Target"].get("Port"), "state": health.get("State"),
                             "reason": health.get("Reason"), "description": health.get("Description")})
        return rows

    def _alarms(self, timeout: float, since: datetime) -> list[dict[str, Any]]:
        from aep_ops.aws.clients import aws_errors

        cloudwatch = self._client("cloudwatch", timeout)
        kwargs: dict[str, Any] = {"StateValue": "ALARM", "MaxRecords": 100}
        if self.cfg.alarm_prefix:
            kwargs["AlarmNamePrefix"] = self.cfg.alarm_prefix
        with aws_errors(cloudwatch, "listing alarms in ALARM"):
            answer = cloudwatch.describe_alarms(**kwargs)
        firing = [a for a in answer.get("MetricAlarms", []) if a.get("StateValue") == "ALARM"]  # whatever the filter
        return [{"name": a["AlarmName"], "reason": a.get("StateReason"), "metric": a.get("MetricName"),
                 "since": _iso(a.get("StateUpdatedTimestamp"))} for a in firing][:MAX_ITEMS]

    def _rds_events(self, timeout: float, since: datetime) -> list[dict[str, Any]]:
        from aep_ops.aws.clients import aws_errors

        rds = self._client("rds", timeout)
        with aws_errors(rds, "reading RDS events", resource=self.instance):
            answer = rds.describe_events(SourceIdentifier=self.instance, SourceType="db-instance", StartTime=since)
        return [{"date": _iso(e.get("Date")), "message": e.get("Message"), "categories": e.get("EventCategories", [])}
                for e in answer.get("Events", [])][-MAX_ITEMS:]

    def _scaling(self, timeout: float, since: datetime) -> list[dict[str, Any]]:
        from aep_ops.aws.clients import aws_errors

        autoscaling = self._client("autoscaling", timeout)
        rows = []
        for name in self.cfg.auto_scaling_groups:
            with aws_errors(autoscaling, "reading Auto Scaling activities", resource=name):
                answer = autoscaling.describe_scaling_activities(AutoScalingGroupName=name, MaxRecords=20)
            for item in answer.get("Activities", []):
                started = item.get("StartTime")
                if started is not None and started < since:
                    continue
                rows.append({"group": name, "status": item.get("StatusCode"), "description": item.get("Description"),
                             "cause": item.get("Cause"), "start": _iso(started)})
        return rows

    def _findings(self, data: dict[str, Any]) -> list[Finding]:
        env, found = self.cfg.env_name, []
        for row in data.get("target_health") or []:
            if row["state"] not in ("healthy", "draining", "initial"):
                host = self.hosts.get(row["target"])
                name = f"{row['target']} ({host.name})" if host else row["target"]
                found.append(Finding(CRITICAL, self.name, f"target {name} is {row['state']}"
                                     f" ({row['reason'] or 'no reason given'})", "every target healthy",
                                     "service.restart", f"inv service.restart --env {env} --role"
                                     f" {host.role if host and host.role else 'ROLE'}",
                                     where=row["target_group"], details=row))
        for alarm in data.get("alarms") or []:
            found.append(Finding(CRITICAL, self.name, f"alarm {alarm['name']} in ALARM: {alarm['reason'] or ''}"[:300],
                                 "CloudWatch alarm state ALARM", where=alarm["name"]))
        for event in data.get("rds_events") or []:
            trouble = any(c in RDS_TROUBLE for c in event["categories"])
            found.append(Finding(WARNING if trouble else INFO, self.name, f"RDS {self.instance}: {event['message']}",
                                 "an RDS event in the window", where=self.instance or ""))
        for activity in data.get("scaling_activities") or []:
            failed = activity["status"] in ("Failed", "Cancelled")
            found.append(Finding(WARNING if failed else INFO, self.name,
                                 f"Auto Scaling {activity['group']}: {activity['status']}: {activity['description']}",
                                 "an Auto Scaling activity in the window", where=activity["group"]))
        return found


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, indent=2, default=str) + "\n"
