"""A crontab (/etc/cron.d format) for hosts without systemd: the same jobs and the same
non-interactive command lines, each under ``flock`` (a second start while one runs does not
queue behind it) and ``timeout`` (the runbook's own bound).

Cron's grammar is smaller than OnCalendar's: the schedule is converted from systemd's
normalized form, and one that cron cannot say (seconds, years, a day of month AND a weekday,
which cron ORs and systemd ANDs) is refused with the reason rather than approximated."""

from __future__ import annotations

import re
import shlex

from aep_ops.base.errors import UsageError
from aep_ops.timers.jobs import Job
from aep_ops.timers.units import STOP_SECONDS

WEEKDAYS = {"Sun": 0, "Mon": 1, "Tue": 2, "Wed": 3, "Thu": 4, "Fri": 5, "Sat": 6}
NORMALIZED = re.compile(r"^(?:(?P<dow>[A-Za-z.,]+) )?(?P<year>\S+)-(?P<month>\S+)-(?P<day>\S+) "
                        r"(?P<hour>[^:\s]+):(?P<minute>[^:\s]+):(?P<second>[^:\s]+)(?: (?P<tz>\S+))?$")
FIELD_MAX = {"minute": 59, "hour": 23, "day": 31, "month": 12}


def cron_fields(normalized: str) -> str:
    """``Mon *-*-* 04:00:00 UTC`` -> ``0 4 * * 1``. Raises UsageError for what cron cannot say."""
    match = NORMALIZED.match(normalized)
    if not match:
        raise UsageError(f"schedule {normalized!r} cannot be written as a cron line")
    parts = match.groupdict()
    if parts["tz"] not in (None, "UTC"):
        raise UsageError(f"schedule {normalized!r}: cron lines here are in UTC; give the time in UTC")
    if parts["year"] != "*":
        raise UsageError(f"schedule {normalized!r}: cron has no year field")
    if parts["second"] not in ("00", "0"):
        raise UsageError(f"schedule {normalized!r}: cron starts on whole minutes only")
    if parts["dow"] and parts["day"] != "*":
        raise UsageError(f"schedule {normalized!r}: cron ORs a day of month with a weekday, systemd ANDs them")
    fields = [_field(parts["minute"], "minute", normalized), _field(parts["hour"], "hour", normalized),
              _field(parts["day"], "day", normalized), _field(parts["month"], "month", normalized),
              _weekdays(parts["dow"], normalized)]
    return " ".join(fields)


def crontab(jobs: list[Job], schedules: dict[str, str], *, command: str, state_dir: str, user: str,
            config_file: str | None) -> str:
    """The whole /etc/cron.d file: one line per scheduled job (``schedules``: OnCalendar ->
    normalized form); a job started by another's success follows it with ``&&``."""
    by_name = {j.name: j for j in jobs}
    lines = ["# Written by aep-ops (inv timers.render --format cron): install as /etc/cron.d/aep-ops-"
             + (jobs[0].env if jobs else "ENV") + ".",
             "# Times are UTC: CRON_TZ is honoured by cronie; with Debian's cron, run the host in UTC.",
             "# cron neither catches up a run missed while the host was down nor spreads starts at random.",
             "SHELL=/bin/sh", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CRON_TZ=UTC", ""]
    for job in jobs:
        if not job.schedule:
            continue
        line = _command(job, command=command, state_dir=state_dir, config_file=config_file)
        if job.then:
            line += " && " + _command(by_name[job.then], command=command, state_dir=state_dir,
                                      config_file=config_file)
        lines.append(f"# {job.name}: {job.runbook} ({job.schedule})")
        lines.append(f"{cron_fields(schedules[job.schedule])} {user} {line} >/dev/null 2>&1")
    return "\n".join(lines) + "\n"


def _command(job: Job, *, command: str, state_dir: str, config_file: str | None) -> str:
    env = [f"AEP_OPS_STATE_DIR={state_dir}", f"AEP_OPS_JOB={job.name}"]
    if config_file:
        env.append(f"AEP_OPS_CONFIG={config_file}")
    words = ["flock", "-n", "-E", "3", f"{state_dir}/locks/cron-{job.env}-{job.name}.lock",
             "timeout", "-k", str(STOP_SECONDS), str(job.timeout_seconds), "env", "--", *env, command,
             *job.arguments()]
    text = "cd " + shlex.quote(state_dir) + " && " + " ".join(shlex.quote(w) for w in words)
    return text.replace("%", "\\%")  # cron turns a bare % into a newline


def _field(text: str, name: str, expression: str) -> str:
    if text == "*":
        return "*"
    return ",".join(_item(item, name, expression) for item in text.split(","))


def _item(item: str, name: str, expression: str) -> str:
    step = ""
    if "/" in item:
        item, step = item.split("/", 1)
        if not step.isdigit():
            raise UsageError(f"schedule {expression!r}: cannot convert the repetition {item}/{step}")
        if ".." not in item and item != "*":
            item = f"{item}..{FIELD_MAX[name]}"
        step = f"/{int(step)}"
    if item == "*":
        return "*" + step
    bounds = item.split("..")
    if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
        raise UsageError(f"schedule {expression!r}: cron cannot say {item!r} in the {name} field")
    return "-".join(str(int(b)) for b in bounds) + step


def _weekdays(text: str | None, expression: str) -> str:
    if not text:
        return "*"
    out = []
    for item in text.split(","):
        bounds = item.split("..")
        if len(bounds) > 2 or any(b not in WEEKDAYS for b in bounds):
            raise UsageError(f"schedule {expression!r}: cannot read the weekdays {text!r}")
        numbers = [WEEKDAYS[b] for b in bounds]
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            if numbers[1] != 0:
                raise UsageError(f"schedule {expression!r}: cron cannot say the wrapping range {item!r}")
            numbers[1] = 7  # Mon..Sun: cron counts Sunday as 0 or 7
        out.append("-".join(str(n) for n in numbers))
    return ",".join(out)
