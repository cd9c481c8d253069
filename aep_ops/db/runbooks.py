"""``db.setup``: the embedded "AEP" source database of backend ``local``, created idempotently.

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
from aep_ops.engine.step import Plan, Step
from aep_ops.errors import AepError, StepFailed, UsageError, VerificationFailed
from aep_ops.log import get_logger

log = get_logger(__name__)

DEFAULT_MAX_AGE_HOURS = 26
# Managed by LocalCluster.configure whatever the caller asks (port, sockets, logging).
_MANAGED_KEYS = ("port", "listen_addresses", "unix_socket_directories", "logging_collector", "log_timezone")
# Settings that prove the running source is PITR-ready.
_REQUIRED_LIVE = {"wal_level": "replica", "archive_mode": "on", "track_commit_timestamp": "on"}


# --- shared helpers (also used by aep_ops.backup.runbooks) ------------------------------------------


def not_local(ctx: RunContext) -> Plan | None:
    """The plan of every local-only step on another backend (RDS checks are a colleague's steps)."""
    backend = ctx.env.get("backend")
    if backend == "local":
        return None
    return Plan.unchanged(f"backend {backend}: managed by Amazon RDS", backend=backend)


def source(ctx: RunContext) -> Any:
    """The environment's LocalDb (cluster + pgBackRest stanza), from the configuration."""
    from aep_ops.db import locations

    return locations.local_db(ctx.settings)


def require_reachable_state_dir(settings: Any) -> None:
    """The postgres user must traverse STATE_DIR to reach the cluster and the repo; say so early."""
    if settings.env.get("backend") != "local":
        return
    from aep_ops.db import locations
    from aep_ops.pg import fsutil

    user = (settings.env.get("postgres") or {}).get("os_user") or "postgres"
    try:
        fsutil.check_traversable(locations.pg_root(settings) / "aep-source", user)
    except KeyError:
        raise UsageError(f"OS user {user!r} does not exist; install PostgreSQL 15 (make drill) or set"
                         f" environments.{settings.env_name}.postgres.os_user") from None
    except UsageError as exc:
        raise UsageError(f"state_dir {settings.state_dir} is not reachable by the {user} user ({exc}); "
                         "set state_dir (or AEP_OPS_STATE_DIR) to a directory it can traverse, "
                         "e.g. /var/lib/aep-ops") from None


def running_source(db: Any, ctx: RunContext) -> Plan | None:
    """Plan.unknown when the source is not up yet (a dry run before db.setup), else None."""
    if db.cluster.exists() and db.cluster.postmaster_pid() is not None:
        return None
    return Plan.unknown(f"the source cluster at {db.cluster.datadir} is not running"
                        f" (run `inv db.setup --env {ctx.env_name}` first)")


def checked_source(ctx: RunContext) -> tuple[Any, Plan | None]:
    """The LocalDb and, when a step has nothing to check yet, the plan to return instead
    (another backend, or a source that is not running in a dry run before db.setup)."""
    if (plan := not_local(ctx)) is not None:
        return None, plan
    db = source(ctx)
    return db, running_source(db, ctx)


def config_drift(db: Any) -> list[str]:
    """Keys of conf.d/aep-ops.conf that differ from what the source should have."""
    wanted = {k: str(v) for k, v in db.source_settings().items()}
    wanted["port"] = str(db.cluster.port)
    current = db.cluster.current_settings()
    keys = [k for k, v in wanted.items() if current.get(k) != v]
    keys += [k for k in current if k not in wanted and k not in _MANAGED_KEYS]
    return sorted(keys)


def pending_restart(conn: Any) -> list[str]:
    """Settings whose file value needs a restart. pg_file_settings reads the files at query time,
    so the answer does not depend on whether this backend has processed a reload yet."""
    with _wrap("reading settings that need a restart", conn):
        return [r[0] for r in conn.execute(
            "select name from pg_settings where pending_restart union select name from pg_file_settings"
            " where not applied and error = 'setting could not be applied' order by 1")]


def reload(conn: Any) -> None:
    with _wrap("reloading the configuration (pg_reload_conf)", conn):
        conn.execute("select pg_reload_conf()")


def iso(when: datetime | None) -> str | None:
    return when.astimezone(timezone.utc).isoformat() if when else None


def backup_outputs(backup: Any) -> dict[str, Any]:
    """A pgBackRest backup as journal outputs (JSON-safe)."""
    return {"label": backup.label, "type": backup.type, "start": iso(backup.start), "stop": iso(backup.stop),
            "wal_start": backup.wal_start, "wal_stop": backup.wal_stop, "database_size": backup.database_size,
            "repo_size": backup.repo_size, "repo": backup.repo_key or 1}


def _wrap(what: str, conn: Any = None) -> Any:
    from aep_ops.pg.connect import wrap_errors

    return wrap_errors(what, conn)


# --- steps ----------------------------------------------------------------------------------


class EnsureSourceCluster(Step):
    """initdb once, PITR-ready settings in conf.d, running, no restart pending."""

    id = "ensure_source_cluster"
    title = "Ensure the local source cluster exists, is configured for PITR and runs"
    timeout = 600

    def check(self, ctx):
        if (plan := not_local(ctx)) is not None:
            return plan
        require_reachable_state_dir(ctx.settings)
        db = source(ctx)
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
                pending = pending_restart(conn)
        except AepError as exc:
            return Plan.change(f"running but not answering on port {cluster.port} ({exc}): restart", missing="restart")
        if pending:
            return Plan.change(f"restart pending for {', '.join(pending)}: restart {where}", missing="restart")
        return Plan.unchanged(f"running at {where}", **_cluster_outputs(db))

    def apply(self, ctx, plan):
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
                pending = pending_restart(conn)
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
            pending = pending_restart(conn)
        wrong = {k: v for k, v in live.items() if v != _REQUIRED_LIVE[k]}
        if wrong or pending:
            raise VerificationFailed(f"source {db.cluster.datadir}: settings not in effect {wrong or ''}"
                                     f"{' restart pending: ' + ', '.join(pending) if pending else ''};"
                                     f" read its log {db.cluster.logfile}")


def _cluster_outputs(db: Any) -> dict[str, Any]:
    c = db.cluster
    return {"datadir": str(c.datadir), "port": c.port, "socket_dir": str(c.socket_dir), "logfile": str(c.logfile)}


class EnsureAppDatabase(Step):
    """The application database with the AEP schema, topped up to the seed scale."""

    id = "ensure_app_database"
    title = "Ensure the AEP database exists with its schema and seed data"
    timeout = 1800

    def check(self, ctx):
        db, plan = checked_source(ctx)
        if plan is not None:
            return plan
        scale = seed_scale(ctx)
        with db.cluster.connect(connect_timeout=5) as conn:
            with _wrap("looking up the application database", conn):
                exists = conn.execute("select 1 from pg_database where datname = %s", (db.dbname,)).fetchone()
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

        from aep_ops.pg import schema

        db = source(ctx)
        scale = int(plan.details["scale"])
        with db.cluster.connect(connect_timeout=5) as conn:
            with _wrap(f"creating database {db.dbname}", conn):
                if not conn.execute("select 1 from pg_database where datname = %s", (db.dbname,)).fetchone():
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
    from psycopg import sql

    from aep_ops.pg import schema

    wanted = {"roles": 5, "permissions": 18, **schema.targets(scale)}
    short = {}
    with db.cluster.connect(db.dbname, connect_timeout=5) as conn, _wrap("counting seeded rows", conn):
        present = {r[0] for r in conn.execute(
            "select tablename from pg_tables where schemaname = 'public' and tablename = any(%s)", (list(wanted),))}
        for table, target in wanted.items():
            have = 0
            if table in present:
                have = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(table))).fetchone()[0]
            if have < target:
                short[table] = (int(have), target)
    return short


class EnsureStanza(Step):
    """pgBackRest config, directories and stanza; the source's archive_command pushes to it."""

    id = "ensure_stanza"
    title = "Ensure the pgBackRest stanza exists and the source archives into it"
    timeout = 600

    def check(self, ctx):
        from aep_ops.backup.repo import stanza_problems

        db, plan = checked_source(ctx)
        if plan is not None:
            return plan
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


class EnsureRecentBackup(Step):
    """A full backup exists in repo1 and the newest ended within backup.max_age_hours."""

    id = "ensure_recent_backup"
    title = "Ensure a recent backup exists in repo1"
    timeout = 3600

    def check(self, ctx):
        db, plan = checked_source(ctx)
        if plan is not None:
            return plan
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
         help={"scale": "seed size (default: drill.scale from the configuration, else 1)"})
def setup(ctx: RunContext, *, scale: int = 0) -> None:
    """Refuse bad input and an unreachable state dir before anything is created."""
    if not 0 <= int(scale) <= 10_000:
        raise UsageError("--scale must be between 1 and 10000 (0: from the configuration)")
    require_reachable_state_dir(ctx.settings)
