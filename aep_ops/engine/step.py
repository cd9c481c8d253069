"""The step contract: check (read-only) -> apply -> verify, and what a check returns.

A step is a class; the engine makes one instance per run. Model: pyinfra's facts and
operations: ``check`` observes and says what would change, ``apply`` acts only when the
check says so, ``verify`` proves the world is now as intended.

    class EnsureGreeting(Step):
        id = "ensure_greeting"
        title = "Write the greeting file"

        def check(self, ctx):
            if path.read_text() == wanted:
                return Plan.unchanged("greeting already written")
            return Plan.change(f"write {path}")

        def apply(self, ctx, plan):
            path.write_text(wanted)
            return {"path": str(path)}          # outputs, journaled, visible to later steps

        def verify(self, ctx, outputs):
            if path.read_text() != wanted:
                raise VerificationFailed(f"{path} does not hold the greeting")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from aep_ops.base.errors import ExecutionError, NotResumable

if TYPE_CHECKING:
    from aep_ops.engine.context import RunContext

# Step states, as recorded in the journal (model: Barman's status constants).
PENDING = "pending"
RUNNING = "running"
UNCHANGED = "unchanged"
CHANGED = "changed"
FAILED = "failed"
SKIPPED = "skipped"
DONE_STATES = (UNCHANGED, CHANGED)


@dataclass(frozen=True)
class Plan:
    """What a check found: a change is needed (and what), nothing to do, or not knowable yet."""

    status: str  # "change" | "unchanged" | "unknown" (| "failed": a soft check found a problem)
    summary: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def change(cls, summary: str, **details: Any) -> "Plan":
        return cls("change", summary, details)

    @classmethod
    def unchanged(cls, summary: str = "", **details: Any) -> "Plan":
        return cls("unchanged", summary, details)

    @classmethod
    def unknown(cls, reason: str) -> "Plan":
        return cls("unknown", reason)

    @property
    def needed(self) -> bool:
        return self.status == "change"

    def describe(self) -> str:
        if self.status == "change":
            return f"would change: {self.summary}"
        if self.status == "unknown":
            return f"unknown until an earlier step runs ({self.summary})"
        if self.status == "failed":
            return f"check failed: {self.summary}"
        return "unchanged" + (f": {self.summary}" if self.summary else "")


class OutputUnavailable(Exception):
    """A check needs an earlier step's output that does not exist yet (dry-run, first run)."""

    def __init__(self, step_id: str, key: str) -> None:
        super().__init__(f"needs output '{key}' of step {step_id}")
        self.step_id = step_id
        self.key = key


class Step:
    """Base class of every runbook step. Override ``check``, ``apply`` and ``verify``.

    Class attributes declare how the engine treats the step:
    - ``idempotent``: False for a one-shot step (``run_*``) that must not be repeated blindly;
      the journal guards it: once changed it is never re-applied on resume, and an
      interrupted apply is not retried without a person looking.
    - ``timeout``: seconds for check+apply+verify (enforced in the main thread).
    - ``retries`` / ``retry_on``: bounded retries of apply on transient errors.
    - ``requires_approval``: in a production environment, apply needs ``--yes``.
    - ``soft``: a verification step; its failure is recorded, the run goes on, and the run
      ends with "verification failed" (exit 5) instead of stopping.
    - ``trial``: its dry-run check is a real trial (certs.renew orders from the staging CA), so
      a failed check fails the dry run (exit 1) instead of being one line of the plan.
    """

    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    idempotent: ClassVar[bool] = True
    timeout: ClassVar[float | None] = None
    retries: ClassVar[int] = 0
    retry_on: ClassVar[tuple[type[BaseException], ...]] = (ExecutionError,)
    requires_approval: ClassVar[bool] = False
    soft: ClassVar[bool] = False
    trial: ClassVar[bool] = False

    def check(self, ctx: "RunContext") -> Plan:
        """Read-only. Default: always needed (a one-shot step)."""
        return Plan.change(self.title)

    def apply(self, ctx: "RunContext", plan: Plan) -> dict[str, Any] | None:
        """Make the change; return outputs to journal (no secrets: they are redacted anyway)."""
        return None

    def verify(self, ctx: "RunContext", outputs: dict[str, Any]) -> None:
        """Raise VerificationFailed if the world is not as intended after apply."""

    def interrupted(self, ctx: "RunContext") -> None:
        """SIGTERM or Ctrl-C arrived while this step ran: stop what it started (a server, a
        restore still writing) before the process exits, so nothing is left running or half
        made. Called with further SIGTERM/SIGINT ignored; an error here is logged, not raised.
        Default: nothing was started outside this process."""

    def recover(self, ctx: "RunContext", prior: Any) -> dict[str, Any] | None:
        """A non-idempotent step was interrupted while applying (``prior``: its journal record).
        Return the outputs of what that attempt did, to record it as done; None when it did
        nothing, so the step runs again; raise NotResumable when only a person can tell.
        Default: a person must look."""
        raise NotResumable(f"step {self.id} was interrupted while applying and is not idempotent;"
                         f" check its effect by hand ({prior.plan}), then start a new run")
