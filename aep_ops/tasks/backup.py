"""``backup.list``: the backups pgBackRest holds for an environment (a read-only view)."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


@task(name="list", help={"env": "environment (default: local)", "json": "print JSON",
                         "set": "override a configuration value, KEY=VALUE (repeatable)"}, iterable=["set"])
def list_(c, env=None, json=False, set=None):
    """List backups, oldest first: type, start/stop, sizes, WAL range, repo (from `pgbackrest info`)."""
    with front_door():
        from aep_ops.backup.repo import list_backups

        settings = load_settings(env, set or [])
        rows = list_backups(settings)
        if json:
            print_json(rows)
            return
        if not rows:
            print(f"no backups for {settings.env_name} (take one: inv backup.run --env {settings.env_name})")
            return
        print(f"{'label':<34} {'type':<5} {'start (UTC)':<20} {'stop (UTC)':<20} {'db size':>10} {'repo size':>10}"
              f"  {'WAL start':<24} {'WAL stop':<24} repo")
        for r in rows:
            start, stop = (r[k][:19].replace("T", " ") for k in ("start", "stop"))
            wal = f"{r['wal_start'] or '-':<24} {r['wal_stop'] or '-':<24}"
            print(f"{r['label']:<34} {r['type']:<5} {start:<20} {stop:<20} {_size(r['database_size']):>10}"
                  f" {_size(r['repo_size']):>10}  {wal} repo{r['repo']}")
