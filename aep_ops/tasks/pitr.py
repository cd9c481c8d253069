"""``pitr.list``: the clusters aep-ops restored, how to connect to each, and which database is active."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json


@task(name="list", help={"env": "environment (default: local)", "json": "print JSON"})
def list_(c, env=None, json=False):
    """List restored clusters (name, target time, status, port, DSN); mark the active database."""
    from aep_ops.db.backends import backend_for
    from aep_ops.db.locations import UNREADABLE

    with front_door():
        settings = load_settings(env)
        backend = backend_for(settings)
        copies = backend.copies()
        active, source = backend.active_name(), backend.source_name()
        for m in copies:
            m["active"] = m.get("name") == active
        if json:
            print_json(copies)
            return
        if not copies:
            print("no restored clusters")
            return
        for m in copies:
            if m.get("status") == UNREADABLE:  # a damaged restore.json: say so, list the others
                print(f"unreadable: {m['problem']}")
                continue
            mark = "  (active)" if m["active"] else ("  (was cut over to)" if m.get("cutover") else "")
            print(f"{m['name']:<34} {m.get('purpose', ''):<6} {m.get('status', ''):<10} target {m.get('target_time')}"
                  f"  port {m.get('port')}{mark}")
            if m.get("dsn"):
                print(f"    {m['dsn']}")
        print(f"{source:<34} source{'  (active)' if active == source else ''}"
              f"{'' if active == source else f'; the application uses {active}'}")
