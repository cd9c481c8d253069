"""``timers.render`` and ``timers.list``: the plain tasks of scheduled runs (``timers.install`` and
``timers.remove`` are runbooks: aep_ops.timers.runbooks)."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json

FORMATS = ("systemd", "cron")


@task(help={"env": "environment whose jobs to render (default: local)",
            "format": "systemd (a service and a timer per job; default) or cron (an /etc/cron.d file)",
            "dir": "write the files into this directory (created if missing) instead of printing them",
            "json": "print {file: text} as JSON", "set": "override a configuration value, KEY=VALUE (repeatable)"},
      iterable=["set"])
def render(c, env=None, format="systemd", dir=None, json=False, set=None):
    """Print (or write into --dir) the units or crontab of the environment's scheduled runbooks,
    verified by systemd-analyze first."""
    with front_door():
        import sys

        from aep_ops.base.errors import UsageError, refuse_blank
        from aep_ops.timers.render import render as render_jobs

        refuse_blank("--dir", dir, "name a directory, or leave the flag out to print the files")
        if format not in FORMATS:
            raise UsageError(f"--format {format!r}: use systemd or cron")
        target = _target_dir(dir) if dir is not None else None
        settings = load_settings(env, set or [])
        rendered = render_jobs(settings, format)
        note = ""
        if format == "systemd":
            from aep_ops.timers.analyze import verify
            from aep_ops.timers.units import EXPOSURE_BAR

            scores = verify(rendered.files, EXPOSURE_BAR)
            note = (f"verified by systemd-analyze; exposure {min(scores.values()):.1f}-{max(scores.values()):.1f}"
                    f" (bar {EXPOSURE_BAR:.1f})") if scores else "no scheduled job"
        if target is not None:
            from aep_ops.base.atomicfile import replace_file

            for name, text in rendered.files.items():
                replace_file(target / name, text.encode())
            print(f"{len(rendered.files)} file(s) written to {target}" + (f"; {note}" if note else ""), file=sys.stderr)
        elif json:
            print_json(rendered.files)
        else:
            for name, text in rendered.files.items():
                print(f"### {name}\n{text}")
            if note:
                print(f"# {len(rendered.jobs)} job(s); {note}", file=sys.stderr)


@task(name="list", help={"env": "environment (default: local)", "json": "print JSON",
                         "set": "override a configuration value, KEY=VALUE (repeatable)"}, iterable=["set"])
def list_(c, env=None, json=False, set=None):
    """Each scheduled job: next run, last run and result (from the journal), installed/enabled,
    overdue (exit 5 when a job is overdue or has never succeeded)."""
    with front_door():
        from invoke.exceptions import Exit

        from aep_ops.timers.listing import rows

        settings = load_settings(env, set or [])
        found = rows(settings)
        if json:
            print_json(found)
        else:
            _print_rows(found, settings.env_name)
        late = [r["job"] for r in found if r["overdue"]]
        if late:
            raise Exit(f"timers.list: overdue or never succeeded: {', '.join(late)}", code=5)


def _print_rows(found: list[dict], env: str) -> None:
    if not found:
        print(f"no scheduled job on {env}")
        return
    head = f"{'job':<24} {'runbook':<14} {'next (UTC)':<21} {'last run':<30} {'result':<20} {'units':<9} state"
    print(head)
    for r in found:
        units = ("enabled" if r["enabled"] else "installed" if r["installed"] else "absent")
        state = "OVERDUE" if r["overdue"] and r["last_success"] else "never ok" if r["overdue"] else "ok"
        print(f"{r['job']:<24} {r['runbook']:<14} {(r['next'] or r['schedule']):<21} {(r['last_run'] or '-'):<30}"
              f" {(r['last_result'] or '-'):<20} {units:<9} {state}")


def _target_dir(path: str):
    from pathlib import Path

    from aep_ops.base.errors import UsageError

    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UsageError(f"--dir {path}: is not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--dir {path}: cannot create it ({exc.strerror})") from None
    return target
