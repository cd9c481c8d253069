"""One migration pass against one database (the environment's, or a rehearsal copy): session
settings, retries and the watcher around either the SQL files or the tool; invalid indexes
a failure left behind are named in its message.
"""

from __future__ import annotations

from typing import Any

from aep_ops.base.errors import StepFailed
from aep_ops.base.log import audit, get_logger
from aep_ops.db import migrate_run, migrate_sql
from aep_ops.db.migrate_config import MigrateConfig
from aep_ops.db.migrate_target import connect
from aep_ops.engine.context import RunContext

log = get_logger(__name__)


def migrate(ctx: RunContext, cfg: MigrateConfig, params: dict[str, Any], tag: str,
            *, where: str = "") -> dict[str, Any]:
    """Apply (or with ``--down``, revert) what is pending on the database at ``params``."""
    from aep_ops.db.migrate_steps import pending

    down = ctx.params.get("down")
    try:
        if cfg.sql_dir is not None:
            outcome = _sql_files(ctx, cfg, params, tag, down)
        else:
            outcome = _command(ctx, cfg, params, tag, down)
    except StepFailed as exc:
        raise StepFailed(f"{where}{exc}{_invalid_indexes_text(params)}") from exc
    with connect(params) as conn:
        left = pending(ctx, cfg, params, conn) if cfg.sql_dir is not None else []
    if left:
        raise StepFailed(f"{where}still pending after the migration: {', '.join(m.name for m in left)}")
    ledger = cfg.ledger_table.split(".")[-1]
    outcome.locks = {(rel, mode) for rel, mode in outcome.locks if rel.split(".")[-1] not in (ledger, f"{ledger}_pkey")}
    record = outcome.record()
    audit(ctx.state_dir, "db.migrate:" + ("revert" if down else "apply"), target=f"{ctx.env_name}{where}",
          args={"migrations": record["applied"], "down": down}, result="done", attempts=outcome.attempts)
    return record


def _sql_files(ctx: RunContext, cfg: MigrateConfig, params: dict[str, Any], tag: str,
               down: str | None) -> migrate_run.Outcome:
    from aep_ops.db.migrate_steps import pending

    with connect(params, application_name=tag, statement_timeout_ms=cfg.statement_timeout_s * 1000) as conn:
        for name, value in migrate_run.session_settings(cfg, conn.info.server_version).items():
            conn.execute("select set_config(%s, %s, false)", (name, value))
        if down is None:
            migrate_sql.ensure_ledger(conn, cfg.ledger_table)

        def attempt(watcher: Any) -> list[str]:
            todo = pending(ctx, cfg, params, conn)  # again each attempt: what an earlier one applied is done
            return migrate_run.apply_files(conn, todo, cfg, ctx.run_id, watcher, ctx.progress, down=down is not None)

        return migrate_run.with_lock_retries(attempt, cfg, params, tag, ctx.note)


def _command(ctx: RunContext, cfg: MigrateConfig, params: dict[str, Any], tag: str,
             down: str | None) -> migrate_run.Outcome:
    argv = [*cfg.down_command, "--", down] if down is not None else list(cfg.command)
    with connect(params) as conn:
        version = conn.info.server_version
    env = migrate_run.command_env(params, cfg, tag, version)
    names = list(ctx.output("pending_migrations", "pending"))

    def attempt(watcher: Any) -> list[str]:
        ctx.progress(f"running {' '.join(argv)}")
        output = migrate_run.run_command(argv, env, cfg, watcher)
        log.info("migrate.command.done", tail=output[-500:])
        return names

    return migrate_run.with_lock_retries(attempt, cfg, params, tag, ctx.note)


def _invalid_indexes_text(params: dict[str, Any]) -> str:
    from aep_ops.db import migrate_facts as facts

    try:
        with connect(params) as conn:
            invalid = facts.invalid_indexes(conn)
    except Exception:  # noqa: BLE001 - the migration's own error is what matters
        return ""
    if not invalid:
        return ""
    return (f"; it left invalid index(es) {', '.join(invalid)}: DROP INDEX CONCURRENTLY them, fix the cause,"
            " run again")
