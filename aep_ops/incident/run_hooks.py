"""The incident package's part in every real run (called by aep_ops.engine.hooks): a runbook named
in ``notify.on_failure`` of the environment pages when it fails, and resolves its page when it
next succeeds (aep_ops.incident.notify.after_run). A notification that fails is logged, audited
and counted; it never fails, changes or delays the run beyond ``notify.deadline_seconds``."""

from __future__ import annotations

from typing import Any

from aep_ops.base.log import get_logger
from aep_ops.base.redact import redact

log = get_logger(__name__)


def run_finished(event: Any) -> None:
    try:
        values = event.settings.env.get("notify") or {}
        if not values.get("on_failure"):
            return  # the common case costs one lookup, no import
        from aep_ops.incident.notify import after_run

        after_run(event.settings, event.runbook.id, event.run_id, event.status, event.error)
    except Exception as exc:  # noqa: BLE001 - a notification never fails the run
        log.warning("notify.hook_failed", error=redact(f"{type(exc).__name__}: {exc}"))
