"""``db.setup``: the embedded "AEP" source database of backend ``local``, created idempotently;
``db.migrate``: the platform's schema migrations, applied safely (steps in ``migrate_*.py``).
``db.terminate`` / ``db.cancel``: end other sessions, named exactly (steps in ``sessions.py``).

One PostgreSQL 15 cluster under STATE_DIR/pg/aep-source (see ``aep_ops.db.locations``), archiving
WAL through pgBackRest, with the AEP schema seeded and a recent full backup. The four steps
are public classes so ``dr.drill`` (and others) can compose them. On backend ``rds`` each
check answers "unchanged": Amazon RDS manages the database, its WAL and its backups.

Heavy imports (psycopg, aep_ops.pg.*) stay inside functions: the CLI imports this module
to list tasks.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan
from aep_ops.db.backends import backend_class
from aep_ops.db.migrate_rehearse import RehearseMigration
from aep_ops.db.migrate_steps import (EnsureMigrationBackup, PendingMigrations, Preflight, RecordRestorePoint,
                                      RunMigration, VerifyMigration, validate_input)
from aep_ops.db import sessions
from aep_ops.db.source import SourceStep, backup_outputs, config_drift, reload, source
from aep_ops.base.errors import AepError, StepFailed, VerificationFailed
from aep_ops.base.log import get_logger

log = get_logger(__name__)

DEFAULT_MAX_AGE_HOURS = 26
# Settings that prove the running source is PITR-ready.
_REQUIRED_LIVE = {"wal_level": "replica", "archive_mode": "on", "track_commit_timestamp": "on"}


# --- steps ----------------------------------------------------------------------------------


class EnsureSourceCluster(SourceStep):
    """initdb once, PITR-ready settings in conf.d, running, no restart pending."""

    id = "ensure_source_cluster"
    title = "Ensure the local source cluster exists, is configured for PITR and runs"
    timeout = 600
    needs_running_source = False  # this step starts it

    def check_source(self, ctx, db):
        from aep_ops.pg import facts

        backend_class(ctx.settings).check_usable(ctx.settings)  # the postgres user reaches the state dir
        cluster = db.cluster
        where = f"{cluster.datadir} (port {cluster.port})"
        if not cluster.exists():
            return Plan.change(f"not initialised: initdb {where}, configure archiving to stanza"
                               f" {db.backrest.config.stanza}, start", missing="initdb")
        drift = config_drift(db)
        if drift:
            return Plan.change(f"config differs ({', '.join(drift)}): rewrite conf.d/aep-ops.conf, reload"
                               " or restart", missing="config", keys=drift)
        if cluster.postmaster_pid() is None:
            return Plan.change(f"not running: start {where}", missing="start")
        try:
            with cluster.connect(connect_timeout=3) as conn:
                pending = facts.pending_restart(conn)
        except AepError as exc:
            return Plan.change(f"running but not answering on port {cluster.port} ({exc}): restart", missing="restart")
        if pending:
            return Plan.change(f"restart pending for {', '.join(pending)}: restart {where}", missing="restart")
        return Plan.unchanged(f"running at {where}", **_cluster_outputs(db))

    def apply(self, ctx, plan):
        from aep_ops.pg import facts

        db = source(ctx)
        cluster = db.cluster
        changed = cluster.init(db.source_settings())
        if cluster.postmaster_pid() is None:
            cluster.start(timeout=120)
            return _cluster_outputs(db)
        try:
            with cluster.connect(connect_timeout=3) as conn:
                if changed:
                    reload(conn)
                pending = facts.pending_restart(conn)
        except AepError:
            pending = ["port"]
        if pending:
            ctx.progress(f"restarting {cluster.datadir} to apply {', '.join(pending)}")
            cluster.stop(timeout=120)
            cluster.start(timeout=120)
        return _cluster_outputs(db)

    def verify(self, ctx, outputs):
        from aep_ops.pg import facts

        db = source(ctx)
        with db.cluster.connect(connect_timeout=5) as conn:
            live = {k: facts.setting(conn, k) for k in _REQUIRED_LIVE}
            pending = facts.pending_restart(conn)
        wrong = {k: v for k, v in live.items() if v != _REQUIRED_LIVE[k]}
        if wrong or pending:
            raise VerificationFailed(f"source {db.cluster.datadir}: settings not in effect {wrong or ''}"
                                     f"{' restart pending: ' + ', '.join(pending) if pending else ''};"
                                     f" read its log {db.cluster.logfile}")


def _cluster_outputs(db: Any) -> dict[str, Any]:
    c = db.cluster
    return {"datadir": str(c.datadir), "port": c.port, "socket_dir": str(c.socket_dir), "logfile": str(c.logfile)}


class EnsureAppDatabase(SourceStep):
    """The application database with the AEP schema, topped up to the seed scale."""

    id = "ensure_app_database"
    title = "Ensure the AEP database exists with its schema and seed data"
    timeout = 1800

    def check_source(self, ctx, db):
        from aep_ops.pg import facts

        scale = seed_scale(ctx)
        with db.cluster.connect(connect_timeout=5) as conn:
            exists = facts.database_exists(conn, db.dbname)
        if not exists:
            return Plan.change(f"create database {db.dbname}, create the schema, seed at scale {scale}",
                               create=True, scale=scale)
        short = _seed_shortfall(db, scale)
        if short:
            return Plan.change(f"seed {db.dbname} at scale {scale}: " + ", ".join(
                f"{t} {have}/{want}" for t, (have, want) in short.items()), create=False, scale=scale)
        return Plan.unchanged(f"database {db.dbname} seeded at scale >= {scale}", dbname=db.dbname, scale=scale)

    def apply(self, ctx, plan):
        from psycopg import sql

        from aep_ops.pg import facts, schema
        from aep_ops.pg.connect import wrap_errors

        db = source(ctx)
        scale = int(plan.details["scale"])
        with db.cluster.connect(connect_timeout=5) as conn:
            if not facts.database_exists(conn, db.dbname):  # checked again right before
                with wrap_errors(f"creating database {db.dbname}", conn):
                    conn.execute(sql.SQL("create database {}").format(sql.Identifier(db.dbname)))
        ctx.progress(f"seeding {db.dbname} at scale {scale}")
        with db.cluster.connect(db.dbname, connect_timeout=5, statement_timeout_ms=1_800_000) as conn:
            inserted = schema.seed(conn, scale)
        return {"dbname": db.dbname, "scale": scale, "inserted": inserted}

    def verify(self, ctx, outputs):
        short = _seed_shortfall(source(ctx), int(outputs["scale"]))
        if short:
            raise VerificationFailed(f"database {outputs['dbname']} is still short of rows after seeding: {short}")


def seed_scale(ctx: RunContext) -> int:
    """--scale when given (e.g. by dr.drill), else drill.scale from the configuration, else 1."""
    scale = ctx.params.get("scale") or (ctx.env.get("drill") or {}).get("scale") or 1
    return int(scale)


def _seed_shortfall(db: Any, scale: int) -> dict[str, tuple[int, int]]:
    """Tables below their seed target: {table: (rows, target)}; missing tables count as 0 rows."""
    from aep_ops.pg import facts, schema
    from aep_ops.pg.connect import wrap_errors

    wanted = {"roles": 5, "permissions": 18, **schema.targets(scale)}
    with db.cluster.connect(db.dbname, connect_timeout=5) as conn, wrap_errors("counting seeded rows", conn):
        have = facts.row_counts(conn, list(wanted), missing_as_zero=True)
    return {table: (int(have[table]), target) for table, target in wanted.items() if have[table] < target}


class EnsureStanza(SourceStep):
    """pgBackRest config, directories and stanza; the source's archive_command pushes to it."""

    id = "ensure_stanza"
    title = "Ensure the pgBackRest stanza exists and the source archives into it"
    timeout = 600

    def check_source(self, ctx, db):
        from aep_ops.backup.repo import stanza_problems

        problems = stanza_problems(db)
        if problems:
            return Plan.change("; ".join(problems), problems=problems)
        cfg = db.backrest.config
        return Plan.unchanged(f"stanza {cfg.stanza} ready in {_repos_text(db)}", **_stanza_outputs(db))

    def apply(self, ctx, plan):
        from aep_ops.backup.repo import fix_archive_command

        db = source(ctx)
        db.backrest.ensure_dirs()
        db.backrest.write_config()
        fix_archive_command(db)
        ctx.progress(f"pgbackrest stanza-create --stanza={db.backrest.config.stanza}")
        db.backrest.stanza_create()
        return _stanza_outputs(db)

    def verify(self, ctx, outputs):
        from aep_ops.backup.repo import stanza_problems

        db = source(ctx)
        problems = stanza_problems(db)
        if problems:
            raise VerificationFailed(f"stanza {db.backrest.config.stanza}: {'; '.join(problems)}")
        ctx.progress("pgbackrest check (switches WAL and waits until it is archived)")
        db.backrest.check(timeout=180)


def _stanza_outputs(db: Any) -> dict[str, Any]:
    cfg = db.backrest.config
    return {"stanza": cfg.stanza, "config_path": cfg.config_path, "repo1_path": cfg.repo1_path,
            "repos": [1, 2] if cfg.repo2 is not None else [1]}


def _repos_text(db: Any) -> str:
    cfg = db.backrest.config
    return f"repo1 {cfg.repo1_path}" + (f" and repo2 s3://{cfg.repo2.bucket}{cfg.repo2.path}" if cfg.repo2 else "")


class EnsureRecentBackup(SourceStep):
    """A full backup exists in repo1 and the newest ended within backup.max_age_hours."""

    id = "ensure_recent_backup"
    title = "Ensure a recent backup exists in repo1"
    timeout = 3600

    def check_source(self, ctx, db):
        try:
            backups = [b for b in db.backrest.info() if (b.repo_key or 1) == 1]
        except StepFailed as exc:
            return Plan.unknown(f"cannot list backups yet ({exc})")
        max_age = timedelta(hours=max_age_hours(ctx))
        if not any(b.type == "full" for b in backups):
            return Plan.change("no full backup in repo1: take a full backup", type="full")
        newest = backups[-1]
        age = datetime.now(timezone.utc) - newest.stop
        if age > max_age:
            return Plan.change(f"newest backup {newest.label} ended {age.total_seconds() / 3600:.1f} h ago"
                               f" (> {max_age_hours(ctx)} h): take a diff backup", type="diff")
        return Plan.unchanged(f"newest backup {newest.label} ({newest.type}) ended {_ago(age)} ago",
                              **backup_outputs(newest))

    def apply(self, ctx, plan):
        db = source(ctx)
        ctx.progress(f"pgbackrest backup --type={plan.details['type']} --repo=1")
        backup = db.backrest.backup(plan.details["type"], repo=1, progress=ctx.progress)
        log.info("backup.taken", label=backup.label, type=backup.type)
        return backup_outputs(backup)

    def verify(self, ctx, outputs):
        labels = {b.label for b in source(ctx).backrest.info()}
        if outputs["label"] not in labels:
            raise VerificationFailed(f"backup {outputs['label']} is not listed by `pgbackrest info`")


def max_age_hours(ctx: RunContext) -> int:
    return int((ctx.env.get("backup") or {}).get("max_age_hours") or DEFAULT_MAX_AGE_HOURS)


def _ago(age: timedelta) -> str:
    seconds = int(age.total_seconds())
    return f"{seconds // 3600} h {seconds % 3600 // 60} min" if seconds >= 3600 else f"{seconds} s"


SETUP_STEPS = [EnsureSourceCluster, EnsureAppDatabase, EnsureStanza, EnsureRecentBackup]


@runbook("db.setup", steps=SETUP_STEPS,
         summary="Create the local AEP source database with WAL archiving and a first backup",
         help={"scale": "seed size (default: drill.scale from the configuration, else 1)"},
         bounds={"scale": (0, 1000)})
def setup(ctx: RunContext, *, scale: int = 0) -> None:
    """Refuse bad input and an unreachable state dir before anything is created."""
    backend_class(ctx.settings).check_usable(ctx.settings)


# --- migrate (steps and helpers in migrate_*.py) ------------------------------------------------

MIGRATE_STEPS = [PendingMigrations, Preflight, EnsureMigrationBackup, RecordRestorePoint, RehearseMigration,
                 RunMigration, VerifyMigration]


@runbook("db.migrate", steps=MIGRATE_STEPS,
         summary="Apply the platform's schema migrations with preflight, lint, a restore point and lock safety",
         help={"plan": "only look: print the SQL, lint findings and preflight results; change nothing",
               "down": "revert this applied migration and every later one (sql_dir + down_dir); with a"
                       " down_command, its argument (node-pg-migrate: a count, e.g. 1)",
               "rehearse": "first run the migration on a copy restored to the restore point (local backend)"})
def migrate(ctx: RunContext, *, plan: bool = False, down: str | None = None, rehearse: bool = False) -> None:
    """Refuse bad input (no migrations configured, a missing directory, a blank value) with exit 2."""
    validate_input(ctx, plan=plan, down=down, rehearse=rehearse)


# --- terminate / cancel other sessions (steps in sessions.py) --------------------------------------

TERMINATE_HELP = {
    "pid": "the backend to terminate (with --backend-start: both as incident.diagnose prints them)",
    "backend_start": "that backend's start time, ISO with UTC offset: a reused PID is refused",
    "idle_in_transaction_older_than": "instead: every session idle in a transaction this long or longer (10m)",
}
CANCEL_HELP = {
    "pid": "the backend whose running query to cancel (with --backend-start, as incident.diagnose prints them)",
    "backend_start": "that backend's start time, ISO with UTC offset: a reused PID is refused",
    "running_longer_than": "instead: every active query running this long or longer (5m)",
}


@runbook("db.terminate", steps=[sessions.TerminateTargets, sessions.EnsureTerminated],
         summary="Terminate a backend by (pid, backend_start), or every session idle in transaction too long",
         help=TERMINATE_HELP)
def terminate(ctx: RunContext, *, pid: str | None = None, backend_start: str | None = None,
              idle_in_transaction_older_than: str | None = None) -> None:
    """Refuse a missing, blank, zero or contradictory target with exit 2 before connecting."""
    ctx.params["selector"] = sessions.parse_selector(
        sessions.TERMINATE, pid=pid, backend_start=backend_start, older_than=idle_in_transaction_older_than,
        flag="--idle-in-transaction-older-than")


@runbook("db.cancel", steps=[sessions.CancelTargets, sessions.EnsureCancelled],
         summary="Cancel the running query of a backend by (pid, backend_start), or every query running too long",
         help=CANCEL_HELP)
def cancel(ctx: RunContext, *, pid: str | None = None, backend_start: str | None = None,
           running_longer_than: str | None = None) -> None:
    """Refuse a missing, blank, zero or contradictory target with exit 2 before connecting."""
    ctx.params["selector"] = sessions.parse_selector(
        sessions.CANCEL, pid=pid, backend_start=backend_start, older_than=running_longer_than,
        flag="--running-longer-than")
