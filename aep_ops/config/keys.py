"""Configuration keys by name, for people typing them: the nearest valid key to a typo, and the
environment-relative form of ``--set`` (``drill.scale`` is ``environments.<env>.drill.scale``,
as the runbooks write it)."""

from __future__ import annotations

import difflib
from typing import Any, Iterator

from aep_ops.config.schema import SCHEMA, Field, ListOf, MapOf, Section


def environment_relative(path: list[str], env_name: str) -> list[str] | None:
    """``["drill", "scale"]`` -> ``["environments", env_name, "drill", "scale"]`` when the first part is
    a key of an environment, else None. A section both at the top and in each environment
    (``metrics``: ``metrics.dir`` is the machine's, ``metrics.heartbeat_url`` the environment's)
    stays top-level for the keys the top level has."""
    from aep_ops.config.schema import schema_at

    environment = SCHEMA.fields["environments"].value
    if not path or path[0] not in environment.fields:
        return None
    if path[0] in SCHEMA.fields and schema_at(path) is not None:
        return None
    return ["environments", env_name, *path]


def _paths(schema: Any, prefix: str, env_name: str) -> Iterator[str]:
    if isinstance(schema, Section):
        for key, sub in schema.fields.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            yield from _paths(sub, path, env_name)
    elif isinstance(schema, MapOf) and not isinstance(schema.value, Field):
        yield from _paths(schema.value, f"{prefix}.{env_name}", env_name)
    elif isinstance(schema, ListOf) and not isinstance(schema.item, Field):
        return  # list items are set whole, not by index


def known_keys(env_name: str = "local", *, relative: bool = True) -> list[str]:
    """Every dotted key for ``env_name``; with ``relative``, also the environment-relative forms."""
    keys = list(_paths(SCHEMA, "", env_name))
    if relative:
        head = f"environments.{env_name}."
        keys += [k[len(head):] for k in keys if k.startswith(head)]
    return keys


def nearest_key(typed: str, env_name: str = "local", *, relative: bool = True) -> str | None:
    """The valid key a typo most likely meant: difflib over the whole dotted key, then a key
    whose last part is the one typed (``smoke_queries`` -> ``drill.smoke_queries``)."""
    parts = typed.split(".")
    if len(parts) > 2 and parts[0] == "environments":
        env_name = parts[1]  # `environments.prod.drill.scal`: prod's keys
    keys = known_keys(env_name, relative=relative)
    close = difflib.get_close_matches(typed, keys, n=1, cutoff=0.75)
    if close:
        return close[0]
    last = typed.rsplit(".", 1)[-1]
    leaf = [k for k in keys if k.rsplit(".", 1)[-1] == last and k != typed]
    if leaf:
        return min(leaf, key=len)
    close = difflib.get_close_matches(typed, keys, n=1, cutoff=0.6)
    return close[0] if close else None
