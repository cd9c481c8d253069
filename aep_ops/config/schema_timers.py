"""The configuration of scheduled runs (``timers:`` at the top level and in an environment).

Kept apart from schema.py so each stays small; the defaults the code reads are in
``aep_ops.timers.jobs`` (each runbook's front matter ``schedule``)."""

from __future__ import annotations

import re

from aep_ops.config.schema import DAY, Field, ListOf, MapOf, Section

JOB_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
JOB_NAME_HELP = "a job name is 1-40 lower-case letters, digits and '-', starting with a letter"

JOB = Section({
    "runbook": Field(str, "the runbook this job runs (default: the runbook whose front matter names the job)"),
    "schedule": Field(str, "systemd OnCalendar expression, e.g. 'Mon *-*-* 04:00:00 UTC'"),
    "params": MapOf(Field("scalar"), "the runbook's parameters, name -> value (e.g. type: full)"),
    "enabled": Field(bool, "false: no unit and no cron line for this job (default true)"),
    "timeout_seconds": Field(int, "TimeoutStartSec (default: the sum of the runbook's step timeouts)",
                             minimum=60, maximum=7 * DAY),
})

ENVIRONMENT_TIMERS = Section({
    "jobs": MapOf(JOB, "scheduled jobs of this environment: overrides of the runbooks' schedules, or new jobs",
                  keys=JOB_NAME, keys_help=JOB_NAME_HELP),
    "randomized_delay_seconds": Field(int, "RandomizedDelaySec, with FixedRandomDelay (default 120)",
                                      minimum=0, maximum=3600),
    "drill_after_full_backup": Field(bool, "run dr.drill on every full backup once it succeeded (default false)"),
    "user": Field(str, "user the services run as (default root)"),
    "read_write_paths": ListOf(Field("path"), "more paths the hardened services may write (the state"
                                              " directory always)"),
})

TOP_TIMERS = Section({
    "unit_dir": Field("path", "where timers.install writes the units (default /etc/systemd/system)"),
    "command": Field("path", "the aep-ops program the units run (default: the one next to this Python)"),
    "systemctl": Field("path", "systemctl to enable and reload with (default /usr/bin/systemctl)"),
    "crontab_user": Field(str, "user column of the rendered cron.d lines (default: timers.user, root)"),
})

ENVIRONMENT_FIELDS = {"timers": ENVIRONMENT_TIMERS}
TOP_FIELDS = {"timers": TOP_TIMERS}
