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
from aep_ops.base.errors import UsageError


def _target(ctx: RunContext) -> datetime:
    return ctx.params["target"]


class ValidateTarget(Step):
    id = "validate_target"
    title = "Validate the target time against the archive and the backups"

    def check(self, ctx):
        found = backend_for(ctx.settings).check_target(_target(ctx))
        lag = found["archive_lag_seconds"]
        from aep_ops.base.textfmt import duration

        return Plan.unchanged(f"restorable from {found['backup_label']} (archive lag "
                              f"{'unknown' if lag is None else duration(lag)})", **found)


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
        _refuse_discard(backend, ctx.params["name"])  # checked again right before: a cutover may have run since
        if not backend.exists(ctx.params["name"]):
            return Plan.unchanged(f"no restore named {ctx.params['name']}")
        return Plan.change(f"stop and remove {ctx.params['name']} (only if aep-ops created it)")

    def apply(self, ctx, plan):
        backend_for(ctx.settings).discard(ctx.params["name"])
        return {"removed": ctx.params["name"]}


def _refuse_discard(backend, name: str) -> None:
    env = backend.settings.env_name
    if name == backend.source_name():
        raise UsageError(f"{name} is the original source database; aep-ops never removes it")
    if name == backend.active_name():
        raise UsageError(f"{name} is the database the application uses (active); cut over to another first"
                         f" (`inv pitr.cutover{'' if env == 'local' else ' --env ' + env} {backend.source_name()}`),"
                         " then discard it")


@runbook("pitr.discard", steps=[EnsureDiscarded], summary="Remove a cluster that aep-ops restored",
         positional=("name",),
         help={"name": "the restore to remove (see `inv pitr.list`); never the active database"})
def discard(ctx: RunContext, *, name: str = "") -> None:
    """Only names aep-ops created can be removed, never the active database nor the original."""
    backend = backend_for(ctx.settings)
    if name != backend.source_name():
        locations.check_restore_name(name)
    _refuse_discard(backend, name)


# --- cutover -------------------------------------------------------------------------------


class _CutoverStep(Step):
    """A step of ``pitr.cutover``: the backend's (needed, summary, details) for the target."""

    requires_approval = True
    plan_method = ""

    def check(self, ctx):
        needed, summary, details = getattr(backend_for(ctx.settings), self.plan_method)(ctx.params["name"])
        return Plan.change(summary, **details) if needed else Plan.unchanged(summary, **details)


class EnsureArchiving(_CutoverStep):
    id = "ensure_archiving"
    title = "Turn WAL archiving on for the new primary"
    plan_method = "plan_protect"
    timeout = 900

    def apply(self, ctx, plan):
        return backend_for(ctx.settings).apply_protect(ctx.params["name"], plan.details, ctx.progress)

    def verify(self, ctx, outputs):
        backend_for(ctx.settings).verify_protect(ctx.params["name"])


class EnsureCutover(_CutoverStep):
    id = "ensure_cutover"
    title = "Point the application at the new primary"
    plan_method = "plan_cutover"

    def apply(self, ctx, plan):
        return backend_for(ctx.settings).apply_cutover(ctx.params["name"], plan.details, ctx.run_id)

    def verify(self, ctx, outputs):
        backend_for(ctx.settings).verify_cutover(ctx.params["name"])


class EnsureFirstBackup(_CutoverStep):
    id = "ensure_first_backup"
    title = "Take a full backup of the new primary right away"
    plan_method = "plan_first_backup"
    timeout = 6 * 3600

    def apply(self, ctx, plan):
        return backend_for(ctx.settings).apply_first_backup(ctx.params["name"], plan.details, ctx.progress)

    def verify(self, ctx, outputs):
        backend_for(ctx.settings).verify_first_backup(ctx.params["name"], outputs)


class CheckArchiving(Step):
    id = "check_archiving"
    title = "A forced WAL switch on the new primary reaches the archive"
    soft = True
    timeout = 300

    def check(self, ctx):
        if ctx.dry_run:
            return Plan.unknown("switches WAL on the new primary once the steps before have run")
        found = backend_for(ctx.settings).check_archiving(ctx.params["name"])
        return Plan.unchanged(found.pop("summary", None) or f"WAL {found.get('wal')} reached the archive", **found)


@runbook("pitr.cutover", steps=[EnsureArchiving, EnsureCutover, EnsureFirstBackup, CheckArchiving],
         summary="Make a restored database (or the original again) the application's protected primary",
         positional=("name",),
         help={"name": "the restore to switch to, or the original source's name (see `inv pitr.list`) to cut back"})
def cutover(ctx: RunContext, *, name: str = "") -> None:
    """local: archiving in a stanza of its own, the pointer file, a full backup; rds: backup retention, Route 53
    and/or Secrets Manager (rds.cutover). Approval in prod. ``from``/``to`` go to the audit log with every step."""
    backend = backend_for(ctx.settings)
    if name != backend.source_name():
        locations.check_restore_name(name)
    current = backend.active_name()
    ctx.params["from"] = current if current != name else (backend.previous_name() or current)
    ctx.params["to"] = name
