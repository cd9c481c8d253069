"""``timers.list``: for each job its next run (systemd's own calendar), its last run and result
(the journal, which every front door writes), whether its units are installed and enabled, and
whether it is overdue: no success for longer than ``Job.overdue_after_seconds``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aep_ops.timers.jobs import Job


def rows(settings: Any, now: datetime | None = None) -> list[dict[str, Any]]:
    from aep_ops.engine.journal import Journal
    from aep_ops.timers import install as units_dir
    from aep_ops.timers.calendar import elapses
    from aep_ops.timers.jobs import scheduled_jobs
    from aep_ops.timers.render import unit_dir

    now = now or datetime.now(timezone.utc)
    jobs = scheduled_jobs(settings)
    upcoming = elapses([j.schedule for j in jobs if j.schedule], iterations=1, base=now)
    directory = unit_dir(settings)
    installed = units_dir.owned(directory, settings.env_name) if directory.is_dir() else {}
    journal = Journal.open(settings)
    try:
        out = []
        for job in jobs:
            runs = [r for r in journal.list_runs(runbook=job.runbook, env=job.env, limit=200) if _matches(job, r)]
            out.append(_row(job, runs, upcoming, installed, directory, now))
        return out
    finally:
        journal.close()


def _row(job: Job, runs: list, upcoming: dict, installed: dict[str, str], directory: Any,
         now: datetime) -> dict[str, Any]:
    from aep_ops.timers import install as units_dir

    last = runs[0] if runs else None
    success = next((r for r in runs if r.status == "succeeded"), None)
    since = _age(success.finished_at or success.started_at, now) if success else None
    nexts = upcoming[job.schedule].times if job.schedule else []
    timer = f"{job.unit}.timer"
    return {
        "job": job.name, "runbook": job.runbook, "env": job.env,
        "schedule": job.schedule or f"after {job.after} succeeds",
        "next": nexts[0].strftime("%Y-%m-%dT%H:%M:%SZ") if nexts else None,
        "last_run": last.started_at if last else None, "last_run_id": last.id if last else None,
        "last_result": last.status if last else None,
        "last_success": success.finished_at if success else None,
        "overdue_after_seconds": job.overdue_after_seconds,
        "overdue": since is None or since > job.overdue_after_seconds,
        "installed": f"{job.unit}.service" in installed,
        "enabled": bool(job.schedule) and units_dir.enabled(directory, timer) if directory.is_dir() else False,
        "command": "aep-ops " + " ".join(job.arguments()),
    }


def _matches(job: Job, run: Any) -> bool:
    """A run of the job's runbook with the job's parameters (a CLI run counts as much as the timer's)."""
    return all(str(run.params.get(name)).lower() == str(value).lower() for name, value in job.params.items())


def _age(stamp: str, now: datetime) -> float:
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (now - when).total_seconds()
