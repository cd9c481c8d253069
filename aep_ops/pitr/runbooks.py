"""Point-in-time restore runbooks: ``pitr.restore``, ``pitr.discard``, ``pitr.cutover``.

A restore always goes into a NEW cluster (local) and never over its source. The target is
validated before anything is touched (refusals exit 2); the copy is verified (timeline, last
replayed commit, smoke queries) and its connection string is printed.
"""

from __future__ import annotations

from datetime import datetime

from aep_ops.db import locations
from aep_ops.db.backends import backend_class, backend_for, name_taken, restore_timeout
from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step


def _target(ctx: RunContext) -> datetime:
    return ctx.params["target"]


class ValidateTarget(Step):
    id = "validate_target"
    title = "Validate the target time against the archive and the backups"

    def check(self, ctx):
        found = backend_for(ctx.settings).check_target(_target(ctx))
        lag = found["archive_lag_seconds"]
        return Plan.unchanged(f"restorable from {found['backup_label']} (archive lag "
                              f"{'unknown' if lag is None else f'{lag:.0f}s'})", **found)


class EnsureRestored(Step):
    id = "ensure_restored"
    title = "Restore into a new cluster and promote it at the target"

    def check(self, ctx):
        state, meta = backend_for(ctx.settings).restore_state(ctx.params["name"], _target(ctx))
        if state == "done":
            return Plan.unchanged(f"{ctx.params['name']} already restored to this target", **meta)
        if state == "other":
            raise name_taken(ctx.params["name"])
        label = ctx.output("validate_target", "backup_label")
        verb = "redo the interrupted restore of" if state == "partial" else "restore"
        return Plan.change(f"{verb} {label} to {_target(ctx).isoformat()} into {ctx.params['name']}")

    def apply(self, ctx, plan):
        timeout = restore_timeout(ctx.settings)
        return backend_for(ctx.settings).restore(ctx.params["name"], _target(ctx), run_id=ctx.run_id,
                                                 purpose="pitr", progress=ctx.progress, timeout=timeout)


class VerifyRestored(Step):
    id = "verify_restored"
    title = "Verify the copy: timeline, last replayed commit, smoke queries"
    soft = True

    def check(self, ctx):
        meta = ctx.step_outputs("ensure_restored")
        drill = ctx.env.get("drill") or {}
        ctx.summary.update({"name": meta["name"], "dsn": meta["dsn"], "port": meta.get("port"),
                            "target_time": meta["target_time"]})
        results = backend_for(ctx.settings).verify(meta, _target(ctx), list(drill.get("smoke_queries") or []))
        return Plan.unchanged(f"timeline {results['timeline']}, last commit {results['last_replayed_commit']}",
                              **results)


@runbook("pitr.restore", steps=[ValidateTarget, EnsureRestored, VerifyRestored],
         summary="Restore the database as of a point in time into a new cluster, and verify it",
         help={"target_time": "ISO 8601 time with a UTC offset, e.g. 2026-11-26T09:41:00Z",
               "name": "name of the new cluster (default: pitr-<target time>)"})
def restore(ctx: RunContext, *, target_time: str = "", name: str = "") -> None:
    """Parse and check the input; nothing is touched before every refusal has had its chance."""
    from aep_ops.pg.target import parse_target_time

    backend_class(ctx.settings).check_usable(ctx.settings)  # exit 2 before anything starts
    target = parse_target_time(target_time)  # parsed once: an aware UTC datetime from here to the restore
    ctx.params["target"] = target
    ctx.params["name"] = locations.check_restore_name(name or f"pitr-{target:%Y%m%d-%H%M%S}")


# --- discard -------------------------------------------------------------------------------


class EnsureDiscarded(Step):
    id = "ensure_discarded"
    title = "Stop and remove the restored cluster"

    def check(self, ctx):
        backend = backend_for(ctx.settings)
        if not backend.exists(ctx.params["name"]):
            return Plan.unchanged(f"no restore named {ctx.params['name']}")
        return Plan.change(f"stop and remove {ctx.params['name']} (only if aep-ops created it)")

    def apply(self, ctx, plan):
        backend_for(ctx.settings).discard(ctx.params["name"])
        return {"removed": ctx.params["name"]}


@runbook("pitr.discard", steps=[EnsureDiscarded], summary="Remove a cluster that aep-ops restored",
         positional=("name",),
         help={"name": "the restore to remove (see `inv pitr.list`)"})
def discard(ctx: RunContext, *, name: str = "") -> None:
    """Only names aep-ops created can be removed; the check refuses anything else."""
    locations.check_restore_name(name)


# --- cutover -------------------------------------------------------------------------------


class EnsureCutover(Step):
    id = "ensure_cutover"
    title = "Point the application at the restored database"
    requires_approval = True

    def check(self, ctx):
        needed, summary, details = backend_for(ctx.settings).plan_cutover(ctx.params["name"])
        return Plan.change(summary, **details) if needed else Plan.unchanged(summary, **details)

    def apply(self, ctx, plan):
        return backend_for(ctx.settings).apply_cutover(ctx.params["name"], plan.details, ctx.run_id)


@runbook("pitr.cutover", steps=[EnsureCutover],
         summary="Point the application at a restored database (the old one is left untouched)",
         positional=("name",), help={"name": "the restore to switch to"})
def cutover(ctx: RunContext, *, name: str = "") -> None:
    """local: the DSN pointer file; rds: Route 53 and/or Secrets Manager (rds.cutover). Approval in prod."""
    locations.check_restore_name(name)
