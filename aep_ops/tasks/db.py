"""``db.url`` and ``db.psql``: reach an environment's primary database (read-only tasks).

Local backend: the AEP source cluster over its unix socket. RDS backend: built from
``database.*`` (falling back to ``rds.*``) in the configuration. The password is a secret
reference, resolved only here, masked unless ``--reveal``, and handed to psql through
PGPASSWORD (never on its command line, where ``ps`` shows it).
"""

from __future__ import annotations

from typing import Any

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings


def connection_params(settings: Any) -> dict[str, Any]:
    """libpq parameters of the environment's primary database; ``password`` stays a reference."""
    from aep_ops.errors import UsageError

    env, name = settings.env, settings.env_name
    if env.get("backend") == "local":
        from aep_ops.db import locations

        db = locations.local_db(settings)
        c = db.cluster
        return {"host": str(c.socket_dir), "port": c.port, "dbname": db.dbname, "user": c.os_user}
    database, rds = env.get("database") or {}, env.get("rds") or {}
    if not database.get("host"):
        raise UsageError(f"environments.{name}.database.host is not set: aep-ops cannot build the DSN of the"
                         f" {env.get('backend')} database without it; set it to the instance endpoint"
                         f" (e.g. with --set environments.{name}.database.host=HOST)")
    user = database.get("user") or rds.get("master_user")
    if not user:
        raise UsageError(f"environments.{name}.database.user (or rds.master_user) is not set")
    return {"host": database["host"], "port": int(database.get("port") or 5432),
            "dbname": database.get("name") or rds.get("dbname") or "aep", "user": user,
            "sslmode": database.get("sslmode") or "require",
            "password": database.get("password") or rds.get("master_password")}


def _conninfo(params: dict[str, Any], password: str | None) -> str:
    from psycopg.conninfo import make_conninfo

    clean = {k: v for k, v in params.items() if k != "password" and v is not None}
    return make_conninfo(**clean, **({"password": password} if password else {}))


@task(help={"env": "environment (default: local)", "reveal": "print the password instead of ****",
            "set": "override a configuration value, KEY=VALUE (repeatable)"}, iterable=["set"])
def url(c, env=None, reveal=False, set=None):
    """Print the DSN of the environment's primary database (password masked unless --reveal)."""
    with front_door():
        settings = load_settings(env, set or [])
        params = connection_params(settings)
        ref = params.get("password")
        if ref is None:
            print(_conninfo(params, None))
        elif reveal:
            print(_conninfo(params, settings.secret(ref)))
        else:
            print(_conninfo(params, "****"))


@task(help={"env": "environment (default: local)",
            "set": "override a configuration value, KEY=VALUE (repeatable)"}, iterable=["set"])
def psql(c, env=None, set=None):
    """Open psql on the environment's primary database (replaces this process)."""
    import os
    import shutil

    with front_door():
        from aep_ops.errors import ToolMissing
        from aep_ops.pg.bin import resolve_bindir

        settings = load_settings(env, set or [])
        params = connection_params(settings)
        bindir = (settings.env.get("postgres") or {}).get("bindir")
        program = str(resolve_bindir(bindir) / "psql")
        if not os.access(program, os.X_OK):
            program = shutil.which("psql") or ""
        if not program:
            raise ToolMissing("psql is not installed: apt-get install postgresql-client-15 (or `make drill`)")
        child_env = dict(os.environ)
        if params.get("password") is not None:
            child_env["PGPASSWORD"] = settings.secret(params["password"])
        argv = [program, _conninfo(params, None)]
        os.execvpe(program, argv, child_env)
