"""The logs area's part in every run (found by aep_ops.engine.hooks): what logs.ship shipped and
what it left pending, as metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aep_ops.metrics.domain import record as record_area
from aep_ops.metrics.textfile import Sample


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


def record(settings: Any, result: Any) -> Path | None:
    return record_area(settings, result, "logs", logs_samples) if result.runbook == "logs.ship" else None


def run_finished(event: Any) -> None:
    if event.result is not None:
        record(event.settings, event.result)
