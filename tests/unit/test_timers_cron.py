"""The crontab rendering says what the timers say: for every default schedule (and the shapes an
override may take) the cron line and the OnCalendar expression give the same next 50 run times,
systemd's answer (``systemd-analyze calendar --iterations=50``) against croniter's."""

from __future__ import annotations

import shlex
from datetime import datetime, timezone

import pytest
from croniter import croniter

from aep_ops import config
from aep_ops.base.errors import UsageError
from aep_ops.timers.calendar import elapses
from aep_ops.timers.cron import cron_fields
from aep_ops.timers.render import render

BASE = datetime(2026, 12, 7, 16, 7, 13, tzinfo=timezone.utc)  # a Monday, mid-hour: no boundary luck
MORE = ["*:0/15", "Mon..Fri *-*-* 08:30:00 UTC", "Sat,Sun *-*-* 10:00:00 UTC", "*-*-01 00:00:00 UTC",
        "*-01,07-* 12:00:00 UTC", "Fri..Sun *-*-* 23:45:00 UTC", "*-*-* 00..06/2:10:00 UTC", "weekly", "monthly"]


def _defaults() -> list[str]:
    return sorted({job.schedule for job in render(config.load("prod")).jobs})


@pytest.mark.parametrize("expression", _defaults() + MORE)
def test_cron_and_oncalendar_give_the_same_next_50_runs(expression):
    schedule = elapses([expression], iterations=50, base=BASE)[expression]
    line = cron_fields(schedule.normalized)
    walker = croniter(line, BASE)
    from_cron = [walker.get_next(datetime) for _ in range(50)]
    assert len(schedule.times) == 50
    assert from_cron == schedule.times, (expression, line)


@pytest.mark.parametrize("expression, reason", [
    ("*-*-* 04:00:30 UTC", "whole minutes"),
    ("2027-*-* 04:00:00 UTC", "no year field"),
    ("Mon *-*-01 04:00:00 UTC", "ORs a day of month with a weekday"),
    ("*-*-* 04:00:00 Europe/Paris", "in UTC"),
])
def test_what_cron_cannot_say_is_refused_with_the_reason(expression, reason):
    normalized = elapses([expression], iterations=1, base=BASE)[expression].normalized
    with pytest.raises(UsageError, match=reason):
        cron_fields(normalized)


def test_each_cron_line_runs_the_same_command_as_the_service_under_flock_and_timeout():
    settings = config.load("prod")
    rendered = render(settings, "cron")
    text = rendered.files["aep-ops-prod"]
    services = render(settings).files
    lines = [line for line in text.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(lines) == len(rendered.jobs)
    for line in lines:
        fields = line.split(None, 6)
        assert fields[5] == "root"
        words = shlex.split(fields[6])
        assert words[:2] == ["cd", str(settings.state_dir.resolve())]
        flock = words.index("flock")
        assert words[flock:flock + 4] == ["flock", "-n", "-E", "3"]  # a second start while one runs: exit 3
        assert words[flock + 5:flock + 8] == ["timeout", "-k", "180"]
        program = next(i for i, w in enumerate(words) if w.endswith("/aep-ops"))
        job = next(j for j in rendered.jobs if words[program + 1:program + 2 + len(j.arguments()) - 1]
                   == j.arguments() and f"AEP_OPS_JOB={j.name}" in words)
        exec_start = next(x for x in services[f"{job.unit}.service"].splitlines() if x.startswith("ExecStart="))
        assert shlex.split(exec_start[len("ExecStart="):]) == words[program:words.index(">/dev/null")]
        assert str(job.timeout_seconds) == words[flock + 8]
