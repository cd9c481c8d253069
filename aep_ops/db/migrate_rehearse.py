"""``db.migrate --rehearse``: the migration runs first on a copy restored (``pitr.restore``'s
machinery) to the restore point just recorded, so its duration and the locks it takes are
known before production sees it; the copy is discarded whatever happened.

Built for the local backend (a copy on this machine in seconds); on RDS a restore takes many
minutes and costs an instance, so it is refused there at input time.
"""

from __future__ import annotations

import time
from datetime import datetime

from aep_ops.base.errors import StepFailed
from aep_ops.base.log import get_logger
from aep_ops.db.migrate_config import migrate_config
from aep_ops.db.migrate_target import params_of, tag
from aep_ops.engine.step import Plan, Step

log = get_logger(__name__)


def copy_name(run_id: str | None) -> str:
    return f"rehearsal-{(run_id or 'plan').lower()}"[:41]


class RehearseMigration(Step):
    id = "rehearse_migration"
    title = "Rehearse the migration on a restored copy (--rehearse)"
    timeout = 4 * 3600

    def check(self, ctx):
        if not ctx.params.get("rehearse"):
            return Plan.unchanged("not asked (--rehearse)")
        if not ctx.output("pending_migrations", "pending"):
            return Plan.unchanged("nothing to migrate")
        if ctx.params.get("plan"):
            return Plan.unchanged("--plan: would restore a copy to the restore point and migrate it first")
        point = ctx.output("record_restore_point", "time")
        return Plan.change(f"restore {copy_name(ctx.run_id)} to {point}, migrate it, report duration and locks,"
                           " discard it")

    def apply(self, ctx, plan):
        from aep_ops.db.backends import backend_for, restore_timeout
        from aep_ops.db.migrate_apply import migrate

        backend = backend_for(ctx.settings)
        name = copy_name(ctx.run_id)
        target = datetime.fromisoformat(ctx.output("record_restore_point", "time"))
        backend.discard(name)  # a rehearsal killed earlier left its copy: start clean
        started = time.monotonic()
        try:
            backend.restore(name, target, run_id=ctx.run_id, purpose="migrate-rehearsal", progress=ctx.progress,
                            timeout=restore_timeout(ctx.settings))
            restored = time.monotonic() - started
            with backend.connect_restored(name) as conn:
                params = params_of(conn)
            cfg = migrate_config(ctx.settings)
            try:
                outcome = migrate(ctx, cfg, params, tag(ctx.run_id, "rehearsal-"), where=" (rehearsal copy) ")
            except StepFailed as exc:
                raise StepFailed(f"rehearsal failed, production untouched: {exc}") from exc
        finally:
            backend.discard(name)
        result = {"copy": name, "restore_seconds": round(restored, 3), "migration_seconds": outcome["seconds"],
                  "locks": outcome["locks"], "lock_timeouts": outcome["lock_timeouts"], "applied": outcome["applied"]}
        ctx.summary["rehearsal"] = result
        ctx.note(f"rehearsal: {outcome['seconds']} s, locks {', '.join(outcome['locks']) or 'none'}")
        return result

    def interrupted(self, ctx):
        from aep_ops.db.backends import backend_for

        backend_for(ctx.settings).discard(copy_name(ctx.run_id))
