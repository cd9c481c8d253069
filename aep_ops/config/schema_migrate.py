"""The configuration of ``db.migrate`` (``migrate:`` of an environment).

Kept apart from schema.py so each stays small; defaults and the rules that combine these
values (one source of migrations, not two) are in ``aep_ops.db.migrate_config``."""

from __future__ import annotations

from aep_ops.config.schema import DAY, Field, ListOf, Section

MIGRATE = Section({
    "command": ListOf(Field(str), "argv that applies the pending migrations, e.g. [npx, node-pg-migrate, up]"),
    "dry_run_command": ListOf(Field(str), "argv that prints the SQL the command would run without running it,"
                                          " e.g. [npx, node-pg-migrate, up, --dry-run]"),
    "down_command": ListOf(Field(str), "argv that reverts migrations (db.migrate --down NAME appends -- NAME)"),
    "sql_dir": Field("path", "directory of .sql migrations applied in name order (instead of a command)"),
    "down_dir": Field("path", "directory of .sql down migrations, one per up migration, with the same names"),
    "ledger_table": Field(str, "table recording applied sql_dir migrations (default aep_ops_migrations)"),
    "dsn": Field("secret", "connection string the migrations run with (default: the environment's database)"),
    "lock_timeout_ms": Field(int, "lock_timeout of the migration session (default 2000)", minimum=1,
                             maximum=600_000),
    "statement_timeout_s": Field(int, "statement_timeout of the migration session (default 3600)", minimum=1,
                                 maximum=DAY),
    "retries": Field(int, "retries after a lock timeout, with jittered backoff (default 5)", minimum=0,
                     maximum=100),
    "retry_base_ms": Field(int, "backoff base: retry N waits up to base * 2^N ms (default 500)", minimum=1,
                           maximum=600_000),
    "max_queue_ms": Field(int, "cancel the migration when a session waits behind it this long (default 3000)",
                          minimum=10, maximum=DAY * 1000),
    "long_transaction_seconds": Field(int, "refuse to start while a transaction is older (default 300)",
                                      minimum=1, maximum=DAY),
    "max_replication_lag_seconds": Field(int, "refuse to start while a replica lags more (default 60)",
                                         minimum=0, maximum=DAY),
    "backup_max_age_hours": Field(int, "take a backup first when the newest is older (default:"
                                       " backup.max_age_hours, else 26)", minimum=1, maximum=24 * 366),
    "migration_lock_id": Field(int, "advisory lock key the tool holds while it migrates (default"
                                    " 7241865325823964, node-pg-migrate's)", minimum=-2 ** 63, maximum=2 ** 63 - 1),
    "lock_table": Field(str, "table whose rows with is_locked <> 0 mean a migration runs (knex_migrations_lock)"),
    "verify": ListOf(Field(str), "queries that must return a row whose first column is true after migrating"),
    "command_timeout_s": Field(int, "seconds the migration command may take (default 3600)", minimum=1,
                               maximum=DAY),
})

ENVIRONMENT_FIELDS = {"migrate": MIGRATE}
