"""The scheduled jobs of an environment: each runbook's front matter ``schedule`` (the default),
overridden, switched off or extended per environment in ``timers.jobs``.

A job is one runbook with fixed parameters on one schedule (``backup.run`` gives two: a daily
full and an hourly incremental). Everything the units, the crontab, the alert rules and
``timers.list`` say about a job comes from here, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from aep_ops.base.errors import ConfigError

DEFAULT_STEP_SECONDS = 600  # a step that declares no timeout of its own
START_MARGIN_SECONDS = 120  # process start, settings, lock, journal: before and after the steps
DEFAULT_RANDOMIZED_DELAY = 120
OVERDUE_GRACE_SECONDS = 600
DRILL_AFTER_FULL = "drill-after-backup-full"


@dataclass(frozen=True)
class Job:
    name: str
    runbook: str
    env: str
    schedule: str  # OnCalendar; empty for a job another job's success starts (OnSuccess=)
    params: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: int = 3600
    randomized_delay_seconds: int = DEFAULT_RANDOMIZED_DELAY
    approve: bool = False  # --yes: production steps pre-approved by installing the timer
    period_seconds: int = 0
    then: str = ""  # the job started on this one's success (a drill after a full backup)
    after: str = ""  # the job whose success starts this one

    @property
    def unit(self) -> str:
        return f"aep-ops-{self.env}-{self.name}"

    @property
    def overdue_after_seconds(self) -> int:
        """No success for this long means the schedule stopped: one period, the run itself, the
        random delay and a grace for a slow start."""
        return self.period_seconds + self.timeout_seconds + self.randomized_delay_seconds + OVERDUE_GRACE_SECONDS

    def arguments(self) -> list[str]:
        """The runbook's command-line words after the program: ``dr.drill --env=prod --yes``.
        ``--name=value`` keeps a value that starts with '-' a value."""
        words = [self.runbook, f"--env={self.env}"]
        for name, value in sorted(self.params.items()):
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                words.append(flag if value else "--no-" + flag[2:])
            else:
                words.append(f"{flag}={value}")
        return words + (["--yes"] if self.approve else [])


def scheduled_jobs(settings: Any, registry: dict | None = None) -> list[Job]:
    """The enabled jobs of ``settings.env_name``, sorted by name, with their periods read from
    systemd (raises ConfigError for a job that names no runbook or a bad parameter, UsageError
    for a schedule systemd refuses, ToolMissing without systemd-analyze)."""
    from aep_ops.timers.calendar import elapses

    registry = registry if registry is not None else _registry()
    specs = _merged_specs(settings, registry)
    timers = settings.env.get("timers") or {}
    delay = int(timers.get("randomized_delay_seconds", DEFAULT_RANDOMIZED_DELAY))
    jobs = {name: _job(name, spec, settings, registry, delay) for name, spec in specs.items()}
    if timers.get("drill_after_full_backup"):
        _add_drill_after_full(jobs, settings, registry, delay)
    schedules = elapses([j.schedule for j in jobs.values() if j.schedule], iterations=16)
    out = []
    for job in jobs.values():
        source = jobs[job.after] if job.after else job
        period = schedules[source.schedule].period_seconds if source.schedule else 0
        out.append(replace(job, period_seconds=period))
    return sorted(out, key=lambda j: j.name)


def front_matter_specs(registry: dict) -> dict[str, dict[str, Any]]:
    """Job name -> {runbook, schedule, params} from every runbook's front matter ``schedule``:
    a string (one job named after the runbook: ``dr.drill`` -> ``dr-drill``) or a mapping of job
    names to ``{schedule, params}``."""
    from aep_ops.engine.markdown import find_doc, parse
    from aep_ops.tasks.plugins import runbook_dirs

    specs: dict[str, dict[str, Any]] = {}
    for rb_id in sorted(registry):
        path = find_doc(rb_id, runbook_dirs())
        front = parse(path).front.get("schedule") if path else None
        if front is None:
            continue
        entries = {rb_id.replace(".", "-"): front} if isinstance(front, str) else front
        if not isinstance(entries, dict):
            raise ConfigError(f"runbooks/{rb_id}.md: schedule must be an OnCalendar string or a mapping of jobs")
        for name, entry in entries.items():
            entry = {"schedule": entry} if isinstance(entry, str) else dict(entry or {})
            if name in specs:
                raise ConfigError(f"runbooks/{rb_id}.md: job {name} is also scheduled by {specs[name]['runbook']}")
            specs[name] = {"runbook": rb_id, "params": {}, **entry}
    return specs


def _merged_specs(settings: Any, registry: dict) -> dict[str, dict[str, Any]]:
    specs = front_matter_specs(registry)
    for name, override in ((settings.env.get("timers") or {}).get("jobs") or {}).items():
        override = {k: v for k, v in (override or {}).items() if v is not None}
        if name not in specs and not (override.get("runbook") and override.get("schedule")):
            if override.get("enabled") is False:
                continue
            raise ConfigError(f"timers.jobs.{name}: no runbook schedules a job of that name; a new job needs"
                              f" both runbook and schedule (known jobs: {', '.join(sorted(specs))})")
        specs[name] = {**specs.get(name, {"params": {}}), **override}
    return {name: spec for name, spec in specs.items() if spec.get("enabled", True) is not False}


def _job(name: str, spec: dict[str, Any], settings: Any, registry: dict, delay: int) -> Job:
    rb = registry.get(spec["runbook"])
    where = f"timers.jobs.{name}"
    if rb is None:
        raise ConfigError(f"{where}: no runbook {spec['runbook']!r} (see `inv runbooks.list`)")
    if rb.positional:
        raise ConfigError(f"{where}: {rb.id} takes positional arguments and cannot run on a schedule")
    return Job(name=name, runbook=rb.id, env=settings.env_name, schedule=str(spec.get("schedule") or ""),
               params=_params(where, rb, spec.get("params") or {}),
               timeout_seconds=int(spec.get("timeout_seconds") or runbook_timeout(rb)),
               randomized_delay_seconds=delay,
               approve=bool(settings.production and any(s.requires_approval for s in rb.steps)))


def _add_drill_after_full(jobs: dict[str, Job], settings: Any, registry: dict, delay: int) -> None:
    """Every full backup followed by a drill, so each one is proven restorable (started by the
    backup's success: OnSuccess= in systemd, ``&&`` in cron)."""
    fulls = [j for j in jobs.values() if j.runbook == "backup.run" and j.params.get("type", "full") == "full"]
    if not fulls:
        raise ConfigError("timers.drill_after_full_backup: no scheduled full backup (a backup.run job with type"
                          " full) to follow")
    full = fulls[0]
    drill = _job(DRILL_AFTER_FULL, {"runbook": "dr.drill"}, settings, registry, delay)
    jobs[full.name] = replace(full, then=DRILL_AFTER_FULL)
    jobs[DRILL_AFTER_FULL] = replace(drill, after=full.name, randomized_delay_seconds=0)


def _params(where: str, rb: Any, given: dict[str, Any]) -> dict[str, Any]:
    """Given values typed like the runbook's parameters; an unknown name or a value of the wrong
    kind is a configuration error now, not a failed run at 4 a.m."""
    known = {p.name: p for p in rb.params}
    out: dict[str, Any] = {}
    for name, value in given.items():
        param = known.get(str(name).replace("-", "_"))
        if param is None:
            raise ConfigError(f"{where}.params.{name}: {rb.id} has no such parameter"
                              f" (it takes: {', '.join(sorted(known)) or 'none'})")
        out[param.name] = _typed(f"{where}.params.{name}", param, value)
    return out


def _typed(where: str, param: Any, value: Any) -> Any:
    text = str(value).strip()
    if param.kind is bool:
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"{where}: expected true or false, got {text[:40]!r}")
        return text.lower() == "true"
    if param.kind in (int, float):
        try:
            number = param.kind(text)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {text[:40]!r}") from None
        low, high = param.bounds
        if (low is not None and number < low) or (high is not None and number > high):
            raise ConfigError(f"{where}: {number} is outside {low}..{high}")
        return number
    if not text or not text.isprintable() or len(text) > 200:
        raise ConfigError(f"{where}: give a non-empty printable value of at most 200 characters")
    return text


def runbook_timeout(rb: Any) -> int:
    """The runbook's own bound: its steps' timeouts added up (a step without one counts
    DEFAULT_STEP_SECONDS), plus the margin of a process start."""
    return sum(int(s.timeout or DEFAULT_STEP_SECONDS) for s in rb.steps) + START_MARGIN_SECONDS


def _registry() -> dict:
    from aep_ops.engine.runbook import load_all
    from aep_ops.tasks.plugins import plugin_modules

    return load_all(plugin_modules())
