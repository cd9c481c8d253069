"""Work done around every real run that is not the run's own (metrics, heartbeat pings).

Found by looking, as the areas are: every package of the root with a ``run_hooks`` module
(``aep_ops/metrics/run_hooks.py``) is told when a real run (not a dry run) starts and when it
ends, whichever front door started it, so the engine names none of them. A module's
``run_started(event)`` and ``run_finished(event)`` are called if it has them. A hook that fails
is one warning in the log: it never fails, changes or hides the run.
"""

from __future__ import annotations

import importlib
import time
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator, Sequence

from aep_ops.base.errors import ApprovalRequired, ToolMissing, UsageError
from aep_ops.base.log import get_logger
from aep_ops.base.redact import redact
from aep_ops.engine.runbook import area_modules

HOOK_MODULE = "run_hooks"
ROOT_PACKAGE = __name__.split(".", 1)[0]
REFUSALS = (ApprovalRequired, UsageError, ToolMissing)  # the runner ends these runs as "refused"

log = get_logger(__name__)


@dataclass
class RunEvent:
    """One real run as the hooks see it; ``status`` and the end are set when it is over."""

    runbook: Any  # engine.runbook.Runbook
    settings: Any
    run_id: str
    resumed: bool
    started_at: float  # epoch seconds
    started: float  # time.monotonic()
    status: str = "running"  # then: succeeded | failed | verification_failed | interrupted | refused
    result: Any = None  # the RunResult, when the run returned one (not when it was refused or interrupted)
    error: str | None = None
    ended_at: float | None = None
    duration: float = 0.0

    def finished(self, result: Any) -> Any:
        """Note the run's result and hand it back: ``return event.finished(_run_steps(...))``."""
        self.result = result
        return result


def hook_modules(root: str = ROOT_PACKAGE) -> list[str]:
    """``<root>.<pkg>.run_hooks`` for every package of ``root`` that has one, sorted (imports nothing)."""
    return area_modules(root, HOOK_MODULE)


@contextmanager
def around_run(rb: Any, settings: Any, run_id: str, *, resumed: bool = False,
               modules: Sequence[str] | None = None) -> Iterator[RunEvent]:
    """Tell the hooks that the run starts, then, however it ends (a result, a refusal, SIGTERM),
    that it ended and how; the exception, if any, goes on unchanged."""
    event = RunEvent(rb, settings, run_id, resumed, time.time(), time.monotonic())
    hooks = _load(hook_modules() if modules is None else modules)
    _call(hooks, "run_started", event)
    try:
        yield event
    except BaseException as exc:
        event.status = _status_of(exc)
        event.error = redact(str(exc)) or type(exc).__name__
        raise
    else:
        event.status = event.result.status if event.result is not None else "failed"
        event.error = getattr(event.result, "error", None)
    finally:
        event.ended_at, event.duration = time.time(), time.monotonic() - event.started
        _call(hooks, "run_finished", event)


def _status_of(exc: BaseException) -> str:
    if isinstance(exc, REFUSALS):
        return "refused"
    if not isinstance(exc, Exception):  # the runner's Interrupted (SIGTERM), KeyboardInterrupt
        return "interrupted"
    return "failed"


def _load(names: Sequence[str]) -> list[ModuleType]:
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:  # noqa: BLE001 - a broken hook must not stop the run
            log.warning("run_hook.import_failed", hook=name, error=redact(f"{type(exc).__name__}: {exc}"))
    return modules


def _call(modules: list[ModuleType], name: str, event: RunEvent) -> None:
    for module in modules:
        function = getattr(module, name, None)
        if function is None:
            continue
        try:
            function(event)
        except Exception as exc:  # noqa: BLE001 - reported; the run's outcome stands
            log.warning("run_hook.failed", hook=module.__name__, call=name,
                        error=redact(f"{type(exc).__name__}: {exc}"))
