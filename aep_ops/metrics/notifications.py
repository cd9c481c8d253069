"""Counts of notifications (aep_ops/incident/notify.py) per environment and channel, sent and failed,
in ``aep_ops_notify_ENV.prom``: read, added to, written back under the file's lock, so the counts
grow across runs and processes (alert on ``increase(aep_ops_notifications{result="failed"}[1h]) > 0``).
The last failure's time is kept beside them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from aep_ops.metrics.textfile import Sample, area_file, locked, merged, read, write

COUNT = "aep_ops_notifications"
LAST_FAILURE = "aep_ops_notification_last_failure_timestamp_seconds"
AREA = "notify"


def record(settings: Any, outcomes: Iterable[tuple[str, bool]], now: float | None = None) -> Path | None:
    """Add one to ``sent`` or ``failed`` of each (channel, delivered) in ``outcomes``."""
    outcomes = list(outcomes)
    if not outcomes:
        return None
    now = time.time() if now is None else now
    env, path = settings.env_name, area_file(settings, AREA)
    with locked(settings, path):
        previous = read(path)
        counts = {s.key(): s.value for s in previous if s.name == COUNT}
        new = []
        for channel, ok in outcomes:
            labels = {"env": env, "channel": channel, "result": "sent" if ok else "failed"}
            sample = Sample(COUNT, labels, counts.get(Sample(COUNT, labels).key(), 0.0) + 1)
            counts[sample.key()] = sample.value
            new.append(sample)
            if not ok:
                new.append(Sample(LAST_FAILURE, {"env": env, "channel": channel}, now))
            other = {**labels, "result": "failed" if ok else "sent"}  # both series exist once either does
            new.append(Sample(COUNT, other, counts.setdefault(Sample(COUNT, other).key(), 0.0)))
        return write(path, merged(previous, new))
