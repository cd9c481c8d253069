"""The backup area's part in every run (found by aep_ops.engine.hooks): backup.run's backup
(age and size, per repository and type) and backup.check's archiving, as metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aep_ops.metrics.domain import epoch, record as record_area
from aep_ops.metrics.textfile import Sample


def backup_samples(env: str, result: Any) -> list[Sample]:
    """The backup the run took (a successful backup.run), one series per repository and type."""
    taken = result.outputs.get("run_backup") or {}
    if result.status != "succeeded" or not taken.get("stop"):
        return []
    labels = {"env": env, "repo": str(taken.get("repo") or 1), "type": str(taken.get("type") or "full")}
    out = [Sample("aep_ops_backup_last_end_timestamp_seconds", labels, epoch(taken["stop"]))]
    for name, key in (("aep_ops_backup_database_bytes", "database_size"), ("aep_ops_backup_repo_bytes", "repo_size"),
                      ("aep_ops_backup_duration_seconds", "seconds")):
        if taken.get(key) is not None:
            out.append(Sample(name, labels, float(taken[key])))
    return out


def archive_samples(env: str, result: Any) -> list[Sample]:
    """backup.check: failing unless both checks passed; lag, last archived and backlog as the
    archiver reported them (also when it failed: VerificationFailed keeps its details)."""
    labels = {"env": env}
    status = result.outputs.get("archiver_status") or {}
    trip = result.outputs.get("archive_roundtrip") or {}
    failing = result.status != "succeeded"
    if not failing and "lag_seconds" not in status and "lag_seconds" not in trip:
        return []  # nothing was looked at (a managed database: "managed by Amazon RDS")
    out = [Sample("aep_ops_archive_failing", labels, 1.0 if failing else 0.0)]
    facts = {**status, **{k: v for k, v in trip.items() if v is not None}}  # the round trip is the later look
    if facts.get("lag_seconds") is not None:
        out.append(Sample("aep_ops_archive_lag_seconds", labels, float(facts["lag_seconds"])))
    if facts.get("last_archived_time"):
        out.append(Sample("aep_ops_archive_last_archived_timestamp_seconds", labels,
                          epoch(facts["last_archived_time"])))
    if status.get("ready_segments") is not None:
        out.append(Sample("aep_ops_archive_ready_segments", labels, float(status["ready_segments"])))
    return out


def record(settings: Any, result: Any) -> Path | None:
    if result.runbook == "backup.run":
        return record_area(settings, result, "backup", backup_samples, keep=True)
    if result.runbook == "backup.check":
        return record_area(settings, result, "archive", archive_samples)
    return None


def run_finished(event: Any) -> None:
    if event.result is not None:
        record(event.settings, event.result)
