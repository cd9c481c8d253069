"""The database the migrations run against: ``migrate.dsn`` when set (migrations often run as
the schema owner, not the application's user), else the environment's primary from its
backend. Passwords are resolved here, at the moment of use, and registered for redaction.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from aep_ops.db.migrate_config import MigrateConfig

TAG_PREFIX = "aep-ops-migrate:"


def conn_params(settings: Any, cfg: MigrateConfig) -> dict[str, Any]:
    """libpq parameters with the password resolved (never logged: redaction knows it)."""
    from aep_ops.db.primary import primary_params

    return primary_params(settings, dsn=cfg.dsn, dsn_key=f"environments.{cfg.env_name}.migrate.dsn")


@contextmanager
def connect(params: dict[str, Any], *, application_name: str = "aep-ops",
            statement_timeout_ms: int = 60_000) -> Iterator[Any]:
    from aep_ops.pg.connect import connect as pg_connect

    conn = pg_connect(params, application_name=application_name, statement_timeout_ms=statement_timeout_ms)
    try:
        yield conn
    finally:
        conn.close()


def tag(run_id: str | None, purpose: str = "") -> str:
    """application_name of the migration's sessions: the watcher finds them by it."""
    return f"{TAG_PREFIX}{purpose}{run_id or 'plan'}"[:63]


def params_of(conn: Any) -> dict[str, Any]:
    """Where an open connection goes (for a copy: the tool connects there too), without a password."""
    info = conn.info
    return {"host": info.host, "port": info.port, "dbname": info.dbname, "user": info.user}
