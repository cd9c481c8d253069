"""``pitr.list``: the clusters aep-ops restored, and how to connect to each."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json


@task(name="list", help={"env": "environment (default: local)", "json": "print JSON"})
def list_(c, env=None, json=False):
    """List restored clusters (name, target time, status, port, DSN)."""
    from aep_ops.db.backends import backend_for
    from aep_ops.db.locations import UNREADABLE

    with front_door():
        settings = load_settings(env)
        copies = backend_for(settings).copies()
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
            print(f"{m['name']:<34} {m.get('purpose', ''):<6} {m.get('status', ''):<10} target {m.get('target_time')}"
                  f"  port {m.get('port')}{'  (cut over)' if m.get('cutover') else ''}")
            if m.get("dsn"):
                print(f"    {m['dsn']}")
