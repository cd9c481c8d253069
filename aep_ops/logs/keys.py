"""Where a rotated file goes in S3: ``[prefix]{env}/{role}/{host}/{yyyy}/{mm}/{dd}/{file}``.

The key is a function of the file alone (its host, role and rotated name, which carries the
rotation's date and second), so every attempt to ship a file aims at the same key and a
create-only put makes a second copy impossible. The date is the rotation's (from the name), not
the lines': logs.fetch widens its window by one rotation period for that reason."""

from __future__ import annotations

import re
from datetime import datetime, timezone

ROTATED = re.compile(r"-(\d{4})(\d{2})(\d{2})-(\d+)(?:\.gz)?$")


def rotation_day(name: str, mtime: float) -> tuple[str, str, str]:
    """(yyyy, mm, dd) from a dateext name (``api.log-20261207-1796653244.gz``), else the file's mtime (UTC)."""
    match = ROTATED.search(name)
    if match:
        return match[1], match[2], match[3]
    day = datetime.fromtimestamp(mtime, timezone.utc)
    return f"{day:%Y}", f"{day:%m}", f"{day:%d}"


def object_key(prefix: str, env: str, role: str, host: str, name: str, mtime: float) -> str:
    yyyy, mm, dd = rotation_day(name, mtime)
    return f"{host_prefix(prefix, env, role, host)}{yyyy}/{mm}/{dd}/{name}"


def host_prefix(prefix: str, env: str, role: str, host: str) -> str:
    return f"{env_prefix(prefix, env)}{role}/{host}/"


def env_prefix(prefix: str, env: str) -> str:
    base = prefix.strip("/")
    return f"{base}/{env}/" if base else f"{env}/"
