"""Connections to PostgreSQL with deadlines, and psycopg errors turned into AepErrors.

Every connection gets a connect timeout and a statement timeout so that a hung server
cannot hang a runbook. Error messages name the server (host, port, database, user) but
never the password, even when libpq echoes parts of the connection string back.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from aep_ops.base import redact
from aep_ops.base.errors import AepError, CommandTimeout, ExecutionError, HostUnreachable, StepFailed

if TYPE_CHECKING:
    import psycopg

DEFAULT_STATEMENT_TIMEOUT_MS = 60_000
_REFUSED_HINTS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    "does not exist",
    "permission denied",
    "authentication failed",
)


def connect(
    dsn_or_kwargs: str | Mapping[str, Any],
    *,
    connect_timeout: int = 5,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    autocommit: bool = True,
    application_name: str = "aep-ops",
) -> psycopg.Connection:
    """Open a connection (autocommit by default: ops queries must not idle in a transaction)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn_or_kwargs) if isinstance(dsn_or_kwargs, str) else dict(dsn_or_kwargs)
    except psycopg.ProgrammingError:  # its message can echo part of the string: drop it
        raise ExecutionError("invalid PostgreSQL connection string (not shown: it may hold a password)") from None
    params.setdefault("application_name", application_name)
    params["connect_timeout"] = int(connect_timeout)
    where = describe_target(params)
    password = params.get("password")
    if password:
        redact.register(str(password))
    try:
        conn = psycopg.connect(**params, autocommit=autocommit)
    except psycopg.Error as exc:
        reason = _redact(_first_line(exc), password)
        if any(h in reason for h in _REFUSED_HINTS):
            raise ExecutionError(f"PostgreSQL {where} refused the connection: {reason}") from exc
        raise HostUnreachable(
            f"cannot connect to PostgreSQL {where} within {connect_timeout}s: {reason}; is the server running?"
        ) from exc
    try:
        conn.execute("select set_config('statement_timeout', %s, false)", (f"{int(statement_timeout_ms)}ms",))
        if not autocommit:
            conn.commit()
    except psycopg.Error as exc:
        conn.close()
        raise ExecutionError(f"PostgreSQL {where}: could not set statement_timeout: {_first_line(exc)}") from exc
    return conn


@contextlib.contextmanager
def wrap_errors(what: str, conn: psycopg.Connection | None = None) -> Iterator[None]:
    """Turn psycopg errors raised inside the block into AepErrors that say ``what`` failed."""
    import psycopg
    from psycopg import errors as pgerr

    try:
        yield
    except AepError:
        raise
    except pgerr.QueryCanceled as exc:
        raise CommandTimeout(f"{what}{_on(conn)}: cancelled by statement_timeout ({_first_line(exc)})") from exc
    except psycopg.OperationalError as exc:
        raise ExecutionError(f"{what}{_on(conn)}: connection failed: {_first_line(exc)}") from exc
    except psycopg.Error as exc:
        state = f" [{exc.sqlstate}]" if getattr(exc, "sqlstate", None) else ""
        raise StepFailed(f"{what}{_on(conn)}: {_first_line(exc)}{state}") from exc


def describe_target(params: Mapping[str, Any]) -> str:
    """``user@host:port/dbname`` from connection parameters, without the password."""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or 5432
    user = params.get("user") or "?"
    db = params.get("dbname") or user
    return f"{user}@{host}:{port}/{db}"


def _on(conn: psycopg.Connection | None) -> str:
    if conn is None:
        return ""
    try:
        info = conn.info
        params = {"host": info.host, "port": info.port, "user": info.user, "dbname": info.dbname}
        return f" on {describe_target(params)}"
    except Exception:  # noqa: BLE001 - a closed connection must not hide the real error
        return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _redact(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text
