"""What a run found, as metrics in its area's file (``aep_ops_backup_prod.prom``): the areas'
own ``run_hooks`` (aep_ops/backup, aep_ops/logs) say which samples their runs' outputs give, and
this module writes them, so the metrics package knows no area's steps.

dr.drill and certs.check write their own files in a step of theirs (aep_ops/dr/report.py,
aep_ops/certs/metrics.py), with names and HELP from the same catalogue. A run that was refused or
interrupted says nothing about the world: nothing is written for it here (its run metrics are).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from aep_ops.base.log import get_logger
from aep_ops.base.redact import redact
from aep_ops.metrics.textfile import Sample, area_file, locked, merged, read, write

FINDINGS = ("succeeded", "failed", "verification_failed")  # the runs whose outputs describe the world

log = get_logger(__name__)


def record(settings: Any, result: Any, area: str, extract: Callable[[str, Any], list[Sample]],
           keep: bool = False) -> Path | None:
    """Write what ``extract`` finds in ``result`` (a RunResult) to the area's file; ``keep``: the
    series this run did not write stay (a full and an incr backup keep each other's). None when
    the run found nothing, or the file could not be written (one warning: never the run's failure)."""
    if result.status not in FINDINGS:
        return None
    new = extract(settings.env_name, result)
    if not new:
        return None
    path = area_file(settings, area)
    try:
        with locked(settings, path):
            return write(path, merged(read(path), new) if keep else new)
    except Exception as exc:  # noqa: BLE001 - metrics that cannot be written never fail the run
        log.warning("metrics.write_failed", metrics=area, error=redact(f"{type(exc).__name__}: {exc}"))
        return None


def epoch(when: Any) -> float:
    """Seconds since the epoch of a number or an ISO 8601 time (pgBackRest's, the journal's)."""
    if isinstance(when, (int, float)):
        return float(when)
    return datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
