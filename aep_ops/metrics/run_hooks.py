"""The metrics package's part in every real run (called by aep_ops.engine.hooks, whichever front
door started the run): the heartbeat's start ping; at the end, the run metrics and the success or
fail ping. What a run found is written by its area's own run_hooks (aep_ops/backup, aep_ops/logs).
Each part stands alone: a metrics directory that cannot be written still lets the ping go, and a
dead ping URL still lets the metrics be written."""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any, Callable

from aep_ops.base.log import get_logger
from aep_ops.base.redact import redact

log = get_logger(__name__)


def run_started(event: Any) -> None:
    from aep_ops.metrics import heartbeat

    _import_soon("prometheus_client", "prometheus_client.parser")
    heartbeat.ping(event.settings, event.runbook.id, event.run_id, "start")


def _import_soon(*names: str) -> None:
    """The run's end writes its metrics with prometheus_client, 40 ms to import: a daemon thread
    imports it now, while the run's steps wait on PostgreSQL, pgBackRest or SSH, so that the end of
    every run (a drill's fixed overhead) does not wait for it. An import that fails here fails
    again, and is reported, where the metrics are written."""
    if all(name in sys.modules for name in names):
        return

    def load() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - see the docstring
                return

    threading.Thread(target=load, name="import-soon", daemon=True).start()


def run_finished(event: Any) -> None:
    from aep_ops.metrics import heartbeat, runs

    settings, runbook_id = event.settings, event.runbook.id
    _safely("run", runs.record, settings, runbook_id, event.status, event.ended_at, event.duration)
    ok = event.status == "succeeded"
    heartbeat.ping(settings, runbook_id, event.run_id, "success" if ok else "fail",
                   "" if ok else f"{event.status}: {event.error or ''}")


def _safely(what: str, write: Callable[..., Any], *args: Any) -> None:
    try:
        path = write(*args)
    except Exception as exc:  # noqa: BLE001 - metrics that cannot be written never fail the run
        log.warning("metrics.write_failed", metrics=what, error=redact(f"{type(exc).__name__}: {exc}"))
        return
    if path is not None:
        log.debug("metrics.written", metrics=what, path=str(path))
