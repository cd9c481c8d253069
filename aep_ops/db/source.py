"""The self-hosted source (backend ``local``): the helpers the db.setup, backup.* and dr.drill steps share.

Heavy imports (psycopg, aep_ops.pg.*) stay inside functions: the CLI imports the runbook modules
that import this one to list tasks.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from aep_ops.engine.context import RunContext
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import UsageError

# Managed by LocalCluster.configure whatever the caller asks (port, sockets, logging).
MANAGED_KEYS = ("port", "listen_addresses", "unix_socket_directories", "logging_collector", "log_timezone")


def not_self_hosted(ctx: RunContext) -> Plan | None:
    """The plan of every step that builds or backs up a self-hosted source, on a backend whose
    provider does that itself (RDS: automated backups, its own WAL archive)."""
    from aep_ops.db.backends import backend_class

    backend = backend_class(ctx.settings)
    if backend.self_hosted:
        return None
    name = ctx.env.get("backend")
    return Plan.unchanged(f"backend {name}: {backend.managed_by}", backend=name)


def require_self_hosted(settings: Any, what: str) -> None:
    """Refuse (exit 2) work that only a self-hosted source has, such as listing pgBackRest backups."""
    from aep_ops.db.backends import backend_class

    if not backend_class(settings).self_hosted:
        raise UsageError(f"{what} on {settings.env_name}: backend '{settings.env.get('backend')}' is not the"
                         " local backend")


def source(ctx: RunContext) -> Any:
    """The environment's LocalDb (cluster + pgBackRest stanza), from the configuration."""
    from aep_ops.db import locations

    return locations.local_db(ctx.settings)


def running_source(db: Any, ctx: RunContext) -> Plan | None:
    """Plan.unknown when the source is not up yet (a dry run before db.setup), else None."""
    if db.cluster.exists() and db.cluster.postmaster_pid() is not None:
        return None
    return Plan.unknown(f"the source cluster at {db.cluster.datadir} is not running"
                        f" (run `inv db.setup --env {ctx.env_name}` first)")


class SourceStep(Step):
    """A step on the self-hosted source (db.setup, backup.*, the drill's first steps).

    Its check answers first for what is not the step's business: a provider-managed backend
    ("unchanged: managed by Amazon RDS") and, when ``needs_running_source``, a source that is not
    up yet (unknown until db.setup has run); then ``check_source(ctx, db)`` does the step's own
    check with the environment's LocalDb."""

    needs_running_source: ClassVar[bool] = True

    def check(self, ctx: RunContext) -> Plan:
        if (plan := not_self_hosted(ctx)) is not None:
            return plan
        db = source(ctx)
        if self.needs_running_source and (plan := running_source(db, ctx)) is not None:
            return plan
        return self.check_source(ctx, db)

    def check_source(self, ctx: RunContext, db: Any) -> Plan:
        raise NotImplementedError(f"step {self.id} must define check_source")


def require_running(db: Any, ctx: RunContext) -> None:
    """VerificationFailed when the source cluster is not running (a health finding, not a plan)."""
    from aep_ops.base.errors import VerificationFailed

    if running_source(db, ctx) is not None:
        raise VerificationFailed(f"the source cluster at {db.cluster.datadir} is not running; start it with"
                                 f" `inv db.setup --env {ctx.env_name}` (log: {db.cluster.logfile})")


def config_drift(db: Any) -> list[str]:
    """Keys of conf.d/aep-ops.conf that differ from what the source should have."""
    wanted = {k: str(v) for k, v in db.source_settings().items()}
    wanted["port"] = str(db.cluster.port)
    current = db.cluster.current_settings()
    keys = [k for k, v in wanted.items() if current.get(k) != v]
    keys += [k for k in current if k not in wanted and k not in MANAGED_KEYS]
    return sorted(keys)


def reload(conn: Any) -> None:
    from aep_ops.pg.connect import wrap_errors

    with wrap_errors("reloading the configuration (pg_reload_conf)", conn):
        conn.execute("select pg_reload_conf()")


def iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).isoformat() if when else None


def backup_outputs(backup: Any) -> dict[str, Any]:
    """A pgBackRest backup as journal outputs (JSON-safe)."""
    return {"label": backup.label, "type": backup.type, "start": iso(backup.start), "stop": iso(backup.stop),
            "wal_start": backup.wal_start, "wal_stop": backup.wal_stop, "database_size": backup.database_size,
            "repo_size": backup.repo_size, "repo": backup.repo_key or 1}
