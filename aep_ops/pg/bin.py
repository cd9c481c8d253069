"""Where the PostgreSQL server binaries live.

Debian installs them in a versioned directory that is not on PATH, so every caller
resolves them here instead of trusting PATH (which may hold a different major version).
"""

from __future__ import annotations

import os
from pathlib import Path

from aep_ops.base.errors import ToolMissing

DEFAULT_BINDIR = "/usr/lib/postgresql/15/bin"
BINDIR_ENV = "AEP_PG_BINDIR"
INSTALL_HINT = "install postgresql-15 (make test / make drill install it)"


def resolve_bindir(bindir: str | os.PathLike[str] | None = None) -> Path:
    """The directory to use: the argument, else $AEP_PG_BINDIR, else the PG 15 default. Always
    absolute: a relative ``postgres.bindir`` such as ``-x`` would make a program path that a
    command line reads as an option."""
    return Path(os.path.abspath(bindir or os.environ.get(BINDIR_ENV) or DEFAULT_BINDIR))


def pg_bin(name: str, bindir: str | os.PathLike[str] | None = None) -> str:
    """Absolute path of one PostgreSQL program (``pg_ctl``, ``initdb``...), or ToolMissing."""
    path = resolve_bindir(bindir) / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolMissing(f"PostgreSQL program `{name}` not found at {path}: {INSTALL_HINT}")
    return str(path)


def require(
    names: tuple[str, ...] = ("initdb", "pg_ctl", "postgres"), bindir: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """Resolve several programs at once so a missing install fails before any work starts."""
    return {name: pg_bin(name, bindir) for name in names}
