"""``migrate:`` of an environment as one typed value, with its defaults and cross-field rules.

Read once per step from the settings; every refusal is a UsageError (exit 2, one line) naming
the key to set, raised before anything is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aep_ops.base.errors import UsageError

NODE_PG_MIGRATE_LOCK_ID = 7241865325823964  # node-pg-migrate's default advisory lock key
DEFAULT_LEDGER = "aep_ops_migrations"
DEFAULT_BACKUP_MAX_AGE_HOURS = 26


@dataclass(frozen=True)
class MigrateConfig:
    command: tuple[str, ...] = ()
    dry_run_command: tuple[str, ...] = ()
    down_command: tuple[str, ...] = ()
    sql_dir: Path | None = None
    down_dir: Path | None = None
    ledger_table: str = DEFAULT_LEDGER
    dsn: Any = None  # a secret reference, resolved only when connecting
    lock_timeout_ms: int = 2000
    statement_timeout_s: int = 3600
    retries: int = 5
    retry_base_ms: int = 500
    max_queue_ms: int = 3000
    long_transaction_seconds: int = 300
    max_replication_lag_seconds: int = 60
    backup_max_age_hours: int = DEFAULT_BACKUP_MAX_AGE_HOURS
    migration_lock_id: int = NODE_PG_MIGRATE_LOCK_ID
    lock_table: str | None = None
    verify: tuple[str, ...] = ()
    command_timeout_s: int = 3600
    env_name: str = "local"

    @property
    def uses_command(self) -> bool:
        return bool(self.command)

    @property
    def source_text(self) -> str:
        return f"`{' '.join(self.command)}`" if self.command else f"SQL files in {self.sql_dir}"


def migrate_config(settings: Any) -> MigrateConfig:
    """The environment's migrate section, checked; UsageError naming the key to fix."""
    raw = settings.env.get("migrate") or {}
    key = f"environments.{settings.env_name}.migrate"
    if not raw.get("command") and not raw.get("sql_dir"):
        raise UsageError(f"db.migrate on {settings.env_name}: no migrations configured; set {key}.command"
                         f" (e.g. [npx, node-pg-migrate, up]) or {key}.sql_dir")
    if raw.get("command") and raw.get("sql_dir"):
        raise UsageError(f"{key}: set command or sql_dir, not both")
    for name in ("command", "dry_run_command", "down_command", "verify"):
        if any(not str(item).strip() for item in raw.get(name) or ()):
            raise UsageError(f"{key}.{name}: an item is blank")
    for name in ("ledger_table", "lock_table"):
        if raw.get(name) is not None and not _qualified_name(str(raw[name])):
            raise UsageError(f"{key}.{name}: {str(raw[name])[:80]!r} is not a table name (name or schema.name)")
    backup = settings.env.get("backup") or {}
    values = {k: v for k, v in raw.items() if v is not None}
    for name in ("command", "dry_run_command", "down_command", "verify"):
        if name in values:
            values[name] = tuple(str(v) for v in values[name])
    for name in ("sql_dir", "down_dir"):
        if name in values:
            values[name] = Path(values[name])
    values.setdefault("backup_max_age_hours", backup.get("max_age_hours") or DEFAULT_BACKUP_MAX_AGE_HOURS)
    return MigrateConfig(**values, env_name=settings.env_name)


def check_dirs(cfg: MigrateConfig, *, down: bool) -> None:
    """The directories the run reads exist (refused before the run starts, not in step 1)."""
    key = f"environments.{cfg.env_name}.migrate"
    if cfg.sql_dir is not None and not cfg.sql_dir.is_dir():
        raise UsageError(f"{key}.sql_dir: {cfg.sql_dir} is not a directory")
    if down and cfg.sql_dir is not None and (cfg.down_dir is None or not cfg.down_dir.is_dir()):
        raise UsageError(f"--down needs {key}.down_dir, a directory of down migrations"
                         f" ({cfg.down_dir or 'not set'})")
    if down and cfg.uses_command and not cfg.down_command:
        raise UsageError(f"--down needs {key}.down_command (e.g. [npx, node-pg-migrate, down])")


def _qualified_name(text: str) -> bool:
    parts = text.split(".")
    return 1 <= len(parts) <= 2 and all(p and len(p) <= 63 and (p[0].isalpha() or p[0] == "_")
                                        and all(c.isalnum() or c == "_" for c in p) for p in parts)


def table_identifier(name: str) -> Any:
    """``schema.table`` as a psycopg.sql.Identifier (composed, never formatted)."""
    from psycopg import sql

    return sql.Identifier(*name.split("."))
