"""``db.url`` and ``db.psql``: reach an environment's primary database (read-only tasks).

Where the database is comes from its backend (``Backend.connection_params``). The password is
a secret reference, resolved only here, masked unless ``--reveal``, and handed to psql through
PGPASSWORD (never on its command line, where ``ps`` shows it).
"""

from __future__ import annotations

from typing import Any

from invoke import task

from aep_ops.db.backends import backend_for
from aep_ops.tasks.frontdoor import front_door, load_settings


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
        params = backend_for(settings).connection_params()
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
        from aep_ops.base.errors import ToolMissing
        from aep_ops.pg.bin import resolve_bindir

        settings = load_settings(env, set or [])
        params = backend_for(settings).connection_params()
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
