"""``certs.list``: the CLI front door of aep_ops.certs.listing (``certs.check``, ``certs.renew`` and
``certs.deploy`` are runbooks: aep_ops.certs.runbooks)."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json


@task(name="list", help={"env": "environment (default: local)", "json": "print JSON",
                         "set": "override a configuration value, KEY=VALUE (repeatable)"}, iterable=["set"])
def list_(c, env=None, json=False, set=None):
    """Certificate lineages: stored versions (* the current one), where each is served, next renewal and why."""
    with front_door():
        from aep_ops.certs.listing import lineages, print_lineages

        settings = load_settings(env, set or [])
        rows = lineages(settings)
        if json:
            print_json(rows)
        else:
            print_lineages(rows, settings.env_name)
