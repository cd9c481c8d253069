"""The drill's scratch copy: its name, what an interrupted drill stops, and the leftovers of
earlier drills that the next one reaps.

A drill's scratch copy exists only for its run. When that run is no longer live (the journal
does not say "running", or says so but nobody holds the run's lock: a SIGKILL), the copy is a
leftover, and the next drill stops and removes it, and says so. Never reaped: a copy kept on
purpose (``--keep``, or kept for inspection after a failed check: the run's
``ensure_scratch_removed`` recorded ``kept``, or the run ended "verification failed"), a copy
of a run the journal does not know (nothing tells whether it was kept), and anything that is
not a drill's scratch (``pitr.restore`` copies, a copy cut over to).
"""

from __future__ import annotations

from typing import Any

from aep_ops.engine.context import RunContext
from aep_ops.engine.step import Step
from aep_ops.base.log import get_logger

log = get_logger(__name__)

PURPOSE = "drill"


def fast_replay_wanted(ctx: RunContext) -> bool:
    """``drill.fast_replay``: the scratch copy replays with ``backends.FAST_REPLAY`` unless set to false."""
    return (ctx.env.get("drill") or {}).get("fast_replay") is not False


def scratch_name(ctx: RunContext) -> str:
    """A valid cluster directory and RDS instance identifier (letters, digits, single hyphens)."""
    return "drill-" + ctx.run_id.lower()


class OnScratch(Step):
    """A step that works on the restored scratch copy: interrupted, it stops the drill's pg_amcheck
    and the copy's server (files kept, so ``--resume`` starts it again; the next fresh drill reaps it)."""

    def interrupted(self, ctx: RunContext) -> None:
        from aep_ops.db.backends import backend_for
        from aep_ops.dr import amcheck_job

        if amcheck_job.stop(ctx):
            ctx.progress("interrupted: stopped pg_amcheck")
        if ctx.run_id and backend_for(ctx.settings).stop_restored(scratch_name(ctx)):
            ctx.progress(f"interrupted: stopped the scratch cluster {scratch_name(ctx)}")


def leftovers(ctx: RunContext) -> list[dict[str, Any]]:
    """Scratch copies of drills that are no longer live and were not kept on purpose. Read-only."""
    from aep_ops.db.backends import backend_for
    from aep_ops.engine import journal as jr
    from aep_ops.engine.runner import run_is_live

    mine = scratch_name(ctx) if ctx.run_id else None
    candidates = [c for c in backend_for(ctx.settings).copies()
                  if c.get("purpose") == PURPOSE and c.get("run_id") and c.get("name") != mine and not c.get("cutover")]
    if not candidates:
        return []
    found = []
    journal = jr.Journal.open(ctx.settings)
    try:
        for copy in candidates:
            run = journal.get_run(copy["run_id"])
            if run is None or run.runbook != ctx.runbook_id or run_is_live(ctx.settings, journal, run):
                continue
            if run.status == jr.RUN_VERIFICATION_FAILED or _kept(journal, run.id):
                continue
            found.append({"name": copy["name"], "run_id": run.id, "run_status": run.status})
    finally:
        journal.close()
    return found


def reap(ctx: RunContext, found: list[dict[str, Any]]) -> list[str]:
    """Stop and remove each leftover (a pgBackRest restore still writing, its server, its files)."""
    from aep_ops.db.backends import backend_for

    backend = backend_for(ctx.settings)
    reaped = []
    for leftover in found:
        backend.discard(leftover["name"])
        reaped.append(leftover["name"])
        message = (f"reaped leftover scratch copy {leftover['name']} of run {leftover['run_id']}"
                   f" ({leftover['run_status']})")
        ctx.progress(message)
        ctx.journal_note(message)
        log.warning("dr.scratch.reaped", **leftover)
    return reaped


def describe(found: list[dict[str, Any]]) -> str:
    names = ", ".join(f"{f['name']} (run {f['run_id']}, {f['run_status']})" for f in found)
    return f"reap {len(found)} leftover scratch cop{'y' if len(found) == 1 else 'ies'}: {names}"


def _kept(journal: Any, run_id: str) -> bool:
    return any(s.step_id == "ensure_scratch_removed" and s.outputs.get("kept") for s in journal.steps(run_id))
