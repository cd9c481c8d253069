"""The configuration of incident diagnostics (``incident:`` of an environment): each source's
deadline, what to probe, and the thresholds that turn facts into findings. The defaults are in
aep_ops.incident.settings; the database's thresholds in schema_incident_postgres."""

from __future__ import annotations

from aep_ops.config.schema import Field, ListOf, Section
from aep_ops.config.schema_incident_postgres import POSTGRES


HOST = Section({
    "load_percent": Field(int, "1-minute load as a percent of the CPUs above which a host is overloaded"
                               " (default 200)", minimum=1, maximum=100_000),
    "cpu_percent": Field(int, "CPU busy percent above which a host is saturated (default 90)", minimum=1,
                         maximum=100),
    "memory_percent": Field(int, "memory in use (not available) percent that warns (default 90)", minimum=1,
                            maximum=100),
    "swap_percent": Field(int, "swap in use percent that warns (default 50)", minimum=1, maximum=100),
    "disk_percent": Field(int, "space used percent of a mounted volume that warns (default 85; critical at 95)",
                          minimum=1, maximum=100),
    "inodes_percent": Field(int, "inodes used percent of a mounted volume that warns (default 85; critical at"
                                 " 95)", minimum=1, maximum=100),
    "clock_offset_ms": Field(int, "clock offset from this machine that warns (default 500)", minimum=1,
                             maximum=3_600_000),
}, help="thresholds of the host checks")

APP = Section({
    "latency_ms": Field(int, "median health answer time that warns (default 1000)", minimum=1, maximum=600_000),
}, help="thresholds of the application checks")

INCIDENT = Section({
    "deadline_seconds": Field(int, "how long each source (a host, the database, AWS, the application) may take"
                                   " before it is reported as timed out (default 10)", minimum=1, maximum=600),
    "parallel": Field(int, "sources collected at once (default 32)", minimum=1, maximum=512),
    "roles": ListOf(Field(str), "host roles to diagnose (default: every host of the inventory)"),
    "service_unit": Field(str, "systemd unit of the API service (default aep-api): a failed one is critical"),
    "app_logs": ListOf(Field("remote_path"), "application logs on the hosts, globs allowed"
                                             " (default /var/log/aep/*.log)"),
    "error_pattern": Field(str, "extended regular expression of an error line (default: ERROR, FATAL, panic,"
                                " Unhandled, uncaught)"),
    "expected_ports": ListOf(Field(int, minimum=1, maximum=65535), "TCP ports every diagnosed host must listen"
                                                                    " on (default none)"),
    "health_endpoints": ListOf(Field(str), "health URLs probed several times each (default: each host's"
                                           " health_url)"),
    "health_probes": Field(int, "GETs per health URL (default 3)", minimum=1, maximum=100),
    "target_groups": ListOf(Field(str), "ALB target groups whose health is read (default: patching's and"
                                        " release's)"),
    "auto_scaling_groups": ListOf(Field(str), "Auto Scaling groups whose recent activities are read (default:"
                                              " patching.asg_name)"),
    "dsn": Field("secret", "PostgreSQL connection string the diagnosis reads with, ideally a role granted"
                           " pg_monitor (default: the environment's primary, as its backend connects)"),
    "alarm_prefix": Field(str, "only CloudWatch alarms whose names begin with this (default: every alarm)"),
    "host": HOST,
    "app": APP,
    "postgres": POSTGRES,
})

ENVIRONMENT_FIELDS = {"incident": INCIDENT}
