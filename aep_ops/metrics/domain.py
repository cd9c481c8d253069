"""What a run found, as metrics: backup age and size (backup.run), archiving (backup.check), logs
shipped and pending (logs.ship); read from the run's own outputs and summary, never a new query.

dr.drill and certs.check write their own files in a step of theirs (aep_ops/dr/report.py,
aep_ops/certs/metrics.py), with names and HELP from the same catalogue. A run that was refused or
interrupted says nothing about the world: nothing is written for it here (its run metrics are).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from aep_ops.metrics.textfile import Sample, area_file, locked, merged, read, write

FINDINGS = ("succeeded", "failed", "verification_failed")  # the runs whose outputs describe the world


def backup_samples(env: str, result: Any) -> list[Sample]:
    """The backup the run took (a successful backup.run), one series per repository and type."""
    taken = result.outputs.get("run_backup") or {}
    if result.status != "succeeded" or not taken.get("stop"):
        return []
    labels = {"env": env, "repo": str(taken.get("repo") or 1), "type": str(taken.get("type") or "full")}
    out = [Sample("aep_ops_backup_last_end_timestamp_seconds", labels, _epoch(taken["stop"]))]
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
                          _epoch(facts["last_archived_time"])))
    if status.get("ready_segments") is not None:
        out.append(Sample("aep_ops_archive_ready_segments", labels, float(status["ready_segments"])))
    return out


def logs_samples(env: str, result: Any) -> list[Sample]:
    """logs.ship: what it shipped and what it left behind (failed, or waiting for compression)."""
    labels = {"env": env}
    summary, step = result.summary, result.outputs.get("ship_files")
    if "shipped" in summary:  # the step shipped (some of) the files
        shipped, failed = list(summary.get("shipped") or []), list(summary.get("failed") or [])
        waiting = int(summary.get("waiting_compression") or 0)
    elif step is not None and "waiting_compression" in step:  # nothing waited to be shipped
        shipped, failed, waiting = [], [], int(step["waiting_compression"])
    else:
        return []  # the hosts could not be listed: nothing is known
    return [Sample("aep_ops_logs_shipped_files", labels, float(len(shipped))),
            Sample("aep_ops_logs_shipped_bytes", labels, float(sum(int(e.get("size") or 0) for e in shipped))),
            Sample("aep_ops_logs_failed_files", labels, float(len(failed))),
            Sample("aep_ops_logs_pending_files", labels, float(len(failed) + waiting))]


# runbook id -> (area file, samples from the run's result, keep the series this run did not write)
WRITERS: dict[str, tuple[str, Callable[[str, Any], list[Sample]], bool]] = {
    "backup.run": ("backup", backup_samples, True),  # a full and an incr keep each other's series
    "backup.check": ("archive", archive_samples, False),
    "logs.ship": ("logs", logs_samples, False),
}


def record(settings: Any, result: Any) -> Path | None:
    """Write the domain metrics of ``result`` (a RunResult); None when its runbook has none or it found nothing."""
    writer = WRITERS.get(result.runbook)
    if writer is None or result.status not in FINDINGS:
        return None
    area, extract, keep = writer
    new = extract(settings.env_name, result)
    if not new:
        return None
    path = area_file(settings, area)
    with locked(settings, path):
        return write(path, merged(read(path), new) if keep else new)


def _epoch(when: Any) -> float:
    if isinstance(when, (int, float)):
        return float(when)
    return datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
