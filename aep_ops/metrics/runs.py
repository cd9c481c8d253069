"""The metrics of every real run: when it ended, when one last succeeded, how long it took, how it
ended; per runbook and environment, whichever front door started it.

A dead-man's switch alerts on the last success growing old (rules.py), so a failed, refused or
interrupted run updates the last run and the result but carries the last success over from the
file as it was; a runbook that never succeeded has no last-success series at all (``absent()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aep_ops.metrics.catalogue import RESULTS
from aep_ops.metrics.textfile import Sample, locked, read, run_file, write

LAST_RUN = "aep_ops_runbook_last_run_timestamp_seconds"
LAST_SUCCESS = "aep_ops_runbook_last_success_timestamp_seconds"
DURATION = "aep_ops_runbook_last_duration_seconds"
RESULT = "aep_ops_runbook_last_result"
SUCCEEDED = "succeeded"


def samples(runbook_id: str, env: str, status: str, ended: float, duration: float,
            last_success: float | None) -> list[Sample]:
    """The file's whole content for one run that ended with ``status`` at ``ended`` (epoch seconds)."""
    labels = {"runbook": runbook_id, "env": env}
    out = [Sample(LAST_RUN, labels, ended)]
    if status == SUCCEEDED:
        last_success = ended
    if last_success is not None:
        out.append(Sample(LAST_SUCCESS, labels, last_success))
    out.append(Sample(DURATION, labels, max(0.0, duration)))
    known = status if status in RESULTS else "failed"  # a status the catalogue does not list counts as a failure
    out += [Sample(RESULT, {**labels, "result": r}, 1.0 if r == known else 0.0) for r in RESULTS]
    return out


def record(settings: Any, runbook_id: str, status: str, ended: float, duration: float) -> Path:
    """Write the run metrics of one run (keeping the last success of the file it replaces)."""
    path = run_file(settings, runbook_id)
    labels = {"runbook": runbook_id, "env": settings.env_name}
    with locked(settings, path):
        previous = [s.value for s in read(path) if s.name == LAST_SUCCESS and s.labels == labels]
        return write(path, samples(runbook_id, settings.env_name, status, ended, duration,
                                   previous[0] if previous else None))
