"""doctor's probes for backend ``rds``: the source instance, point-in-time restore, daily snapshots.

Read-only AWS calls through the one client factory: DescribeDBInstances (and the automated
backups' restore window, via ``rds_facts.source_facts``) and DescribeDBSnapshots. The
"archiving" of an RDS instance is its automated backups: retention above 0 and a
LatestRestorableTime that trails now by less than the RPO; the daily backup is its newest
automated snapshot.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aep_ops.doctor.environment import DAILY, aws_client
from aep_ops.doctor.rows import age_text, row, split_fix
from aep_ops.engine.context import RunContext
from aep_ops.base.errors import AepError
from aep_ops.base.textfmt import duration

USES_AWS = True


def source_rows(ctx: RunContext, *, now: datetime | None = None) -> list[dict]:
    from aep_ops.db.backends.rds_facts import archive_lag, check_backups, iso, required_retention_days, source_facts

    instance_id, rds = _source(ctx)
    item = f"rds {instance_id}"
    try:
        facts = source_facts(rds, instance_id)
    except AepError as exc:
        return [row(item, False, *split_fix(str(exc), "check rds.instance_id and aws.region for this environment"))]
    now = now or datetime.now(timezone.utc)
    rows = [row(item, facts.status == "available",
                f"{facts.status}, {facts.engine} {facts.engine_version}, {facts.instance_class}",
                f"the instance must be available: wait for it, or start it (`aws rds start-db-instance"
                f" --db-instance-identifier {instance_id}`)")]
    problems = check_backups(facts, required_retention_days=required_retention_days(ctx.settings))
    for problem in problems:
        rows.append(row("point-in-time restore", False,
                        *split_fix(problem, "wait for the first automated backup, then run doctor again")))
    lag = archive_lag(facts, now)
    rpo = int((ctx.env.get("objectives") or {}).get("rpo_seconds") or 900)
    if not problems and lag is not None:
        latest = iso(facts.latest_restorable_time)
        if lag.total_seconds() > rpo:
            rows.append(row("point-in-time restore", False,
                            f"restorable only up to {latest}, {duration(lag.total_seconds())} ago"
                            f" (RPO {duration(rpo)})",
                            "RDS trails by about 5 minutes when healthy: read `aws rds describe-events"
                            f" --source-identifier {instance_id} --source-type db-instance`"))
        else:
            rows.append(row("point-in-time restore", True,
                            f"retention {facts.backup_retention_days} days, restorable up to {latest}"
                            f" ({duration(lag.total_seconds())} ago)"))
    return rows


def backup_rows(ctx: RunContext, *, now: datetime | None = None) -> list[dict]:
    from aep_ops.aws.clients import aws_errors

    instance_id, rds = _source(ctx)
    item = "automated snapshots"
    try:
        with aws_errors(rds, f"listing the automated snapshots of {instance_id}", resource=instance_id):
            snapshots = [s for page in rds.get_paginator("describe_db_snapshots").paginate(
                DBInstanceIdentifier=instance_id, SnapshotType="automated") for s in page.get("DBSnapshots") or []
                if s.get("SnapshotCreateTime") and s.get("Status") == "available"]
    except AepError as exc:
        return [row(item, False, *split_fix(str(exc), "allow rds:DescribeDBSnapshots to this identity"))]
    if not snapshots:
        return [row(item, False, f"no automated snapshot of {instance_id}",
                    "automated backups run daily in the backup window: set BackupRetentionPeriod above 0 and"
                    " read the instance's events")]
    newest = max(snapshots, key=lambda s: s["SnapshotCreateTime"])
    taken = newest["SnapshotCreateTime"]
    taken = taken if taken.tzinfo else taken.replace(tzinfo=timezone.utc)
    age = ((now or datetime.now(timezone.utc)) - taken).total_seconds()
    text = f"newest {newest['DBSnapshotIdentifier']} taken {age_text(age)} ago"
    if age > DAILY.total_seconds():
        return [row(item, False, f"{text}; backups must be daily",
                    f"read `aws rds describe-events --source-identifier {instance_id} --source-type db-instance`"
                    " and the backup window; take a manual snapshot now if the next window is far")]
    return [row(item, True, text)]


def _source(ctx: RunContext) -> tuple[str, Any]:
    instance_id = (ctx.env.get("rds") or {}).get("instance_id")
    return instance_id, aws_client(ctx, "rds")
