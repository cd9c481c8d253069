"""What a step sees while it runs: settings, parameters, earlier outputs, progress."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from aep_ops.engine.step import OutputUnavailable


@dataclass
class RunOptions:
    """How the front door asked for the run."""

    dry_run: bool = False
    resume: str | None = None
    yes: bool = False
    approved_by: str | None = None  # the second person who approved (chat-ops, engine/approvals)
    claim: str | None = None  # the approved request (a run awaiting approval) this run carries out


@dataclass
class RunContext:
    settings: Any  # aep_ops.config.Settings (kept loose: the engine imports no domain code)
    runbook_id: str
    params: dict[str, Any]
    options: RunOptions
    run_id: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    soft_failures: dict[str, str] = field(default_factory=dict)  # soft step id -> why it failed (this attempt)
    timings: dict[str, float] = field(default_factory=dict)  # step id -> seconds (this attempt)
    summary: dict[str, Any] = field(default_factory=dict)  # what the front door shows first (e.g. a dsn)
    out: IO[str] = field(default_factory=lambda: sys.stderr)
    journal_note: Callable[[str], None] | None = None  # set by the runner for the running step

    def note(self, message: str) -> None:
        """Record ``message`` in the journal under the running step (``runs.show`` lists it).
        For progress inside a step that a later reader needs: who was drained, what failed."""
        if self.journal_note is not None and not self.dry_run:
            self.journal_note(message)

    @property
    def env_name(self) -> str:
        return self.settings.env_name

    @property
    def env(self) -> dict[str, Any]:
        return self.settings.env

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    def output(self, step_id: str, key: str) -> Any:
        """An earlier step's output; raises OutputUnavailable when it has not run (yet)."""
        try:
            return self.outputs[step_id][key]
        except KeyError:
            raise OutputUnavailable(step_id, key) from None

    def step_outputs(self, step_id: str) -> dict[str, Any]:
        """All outputs of an earlier step; raises OutputUnavailable when it has not run (yet)."""
        if step_id not in self.outputs:
            raise OutputUnavailable(step_id, "*")
        return self.outputs[step_id]

    def secret(self, ref: Any) -> str:
        return self.settings.secret(ref)

    def progress(self, message: str) -> None:
        """A line of progress for long work (stderr; the log gets the structured event)."""
        from aep_ops.base.log import get_logger
        from aep_ops.base.redact import redact

        say(self.out, f"      {redact(message)}")
        get_logger("aep_ops.engine").info("step.progress", message=message)


def say(out: IO[str], line: str) -> None:
    """Human progress, only on a terminal: off one (timers, chat-ops, pipes) stderr carries JSON
    log lines only, and the structured events carry the progress."""
    from aep_ops.base.redact import redact

    if getattr(out, "isatty", lambda: False)() or getattr(out, "aep_ops_human", False):
        print(redact(line), file=out, flush=True)
