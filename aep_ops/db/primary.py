"""Where a runbook that talks to the environment's database connects: a DSN of its own when one
is configured (migrations run as the schema owner, a diagnosis as a pg_monitor role), else the
primary as the environment's backend reaches it. The password is resolved here, at the moment of
use, and registered for redaction; a DSN that does not parse is reported without being shown."""

from __future__ import annotations

from typing import Any

from aep_ops.base.errors import ConfigError


def primary_params(settings: Any, *, dsn: Any = None, dsn_key: str = "") -> dict[str, Any]:
    """libpq keyword parameters with the password resolved. ``dsn`` is a secret reference
    (``dsn_key`` names its configuration key for the error)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from aep_ops.base import redact
    from aep_ops.db.backends import backend_for

    if dsn is not None:
        try:
            params = conninfo_to_dict(settings.secret(dsn))
        except psycopg.ProgrammingError:
            raise ConfigError(f"{dsn_key or 'the DSN'} is not a valid PostgreSQL connection string (not shown: it"
                              " may hold a password)") from None
    else:
        params = dict(backend_for(settings).connection_params())
        if params.get("password") is not None:
            params["password"] = settings.secret(params["password"])
    if params.get("password"):
        redact.register(str(params["password"]))
    return params
