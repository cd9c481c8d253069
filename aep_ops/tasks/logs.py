"""``logs.fetch``: the CLI front door of aep_ops.logs.fetch (``logs.rotate``, ``logs.ship`` and
``logs.retention`` are runbooks: aep_ops.logs.runbooks)."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings


@task(help={"env": "environment (default: local)", "host": "only this host (default: every host with logs)",
            "since": "from this long ago (30m, 2h, 1d) or this ISO 8601 time (default 30m)",
            "until": "up to this time, same forms (default: now)", "grep": "only lines matching this regex",
            "role": "only the log sources of this role", "json": "one JSON object per line",
            "set": "override a configuration value, KEY=VALUE (repeatable)"}, iterable=["set"])
def fetch(c, env=None, host=None, since="30m", until=None, grep=None, role=None, json=False, set=None):
    """Lines of a time window from S3 and the hosts' files, merged in time order (for incidents)."""
    with front_door():
        import json as json_module
        import re
        import sys
        from datetime import datetime, timezone

        from aep_ops.base.errors import UsageError, refuse_blank
        from aep_ops.fleet.inventory import role_flag
        from aep_ops.logs.fetch import collect, when

        refuse_blank("--host", host, "name a host, or leave the flag out for every host")
        refuse_blank("--grep", grep, "give a regular expression, or leave the flag out for every line")
        settings = load_settings(env, set or [])
        now = datetime.now(timezone.utc)
        start, end = when("--since", since, now), when("--until", until, now) or now
        if start > end:
            raise UsageError(f"--since ({start:%Y-%m-%dT%H:%M:%SZ}) is after --until ({end:%Y-%m-%dT%H:%M:%SZ})")
        try:
            pattern = re.compile(grep) if grep else None
        except re.error as exc:
            raise UsageError(f"--grep {grep!r} is not a regular expression: {exc}") from None
        closers: list = []
        count = 0
        try:
            for line in collect(settings, host=host, since=start, until=end, pattern=pattern, role=role_flag(role),
                                closers=closers):
                count += 1
                if json:
                    print(json_module.dumps(line.to_json()), flush=False)
                else:
                    print(f"{line.host} {line.source} {line.text}")
        finally:
            for closer in closers:
                closer.close()
        print(f"{count} line(s) from {start:%Y-%m-%dT%H:%M:%SZ} to {end:%Y-%m-%dT%H:%M:%SZ}", file=sys.stderr)
