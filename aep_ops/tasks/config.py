"""``config.show``: the effective configuration, secrets shown as references only; in YAML
(``null``, ``true``, ``[a, b]``), with where each value came from as a comment."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json
from aep_ops.tasks.yamltext import inline


@task(help={"env": "environment to show (default: local)", "json": "print JSON",
            "set": "override a value, KEY=VALUE (repeatable; drill.scale=2 means environments.ENV.drill.scale)"}, iterable=["set"])
def show(c, env=None, json=False, set=None):
    """Print the effective configuration of an environment and where each value came from."""
    with front_door():
        settings = load_settings(env, set or [])
        data = settings.masked()
        view = {key: value for key, value in data.items() if key != "environments"}
        view["environment"] = {"name": settings.env_name, **data["environments"][settings.env_name]}
        view["environments_configured"] = sorted(data["environments"])
        if json:
            print_json({"config": view, "sources": settings.sources})
            return
        _print_tree(view, settings.sources, settings.env_name)


def _print_tree(node, sources, env_name, prefix="", indent=0):
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else key
        source_path = f"environments.{env_name}." + path.split(".", 1)[1] if path.startswith("environment.") else path
        pad = "  " * indent
        if isinstance(value, dict) and value:
            print(f"{pad}{key}:")
            _print_tree(value, sources, env_name, path, indent + 1)
        else:
            src = sources.get(source_path) or ""
            print(f"{pad}{key}: {inline(value)}" + (f"    # {src}" if src else ""))
