"""The configuration of service restarts (``service:`` of an environment): which systemd unit
``service.restart`` restarts and how long a restarted host has to come back healthy. The load
balancer and the capacity floor are the ones patching uses (``patching.lb``,
``patching.target_group_arns``/``asg_name``, ``patching.min_healthy``): one description of how a
host leaves and rejoins service. Defaults are in aep_ops.service.host."""

from __future__ import annotations

from aep_ops.config.schema import DAY, Field, ListOf, Section

SERVICE = Section({
    "unit": Field(str, "systemd unit of the API service (default aep-api)"),
    "restart_command": ListOf(Field(str), "argv that restarts the unit, run as root; {unit} in an argument is"
                                          " replaced by the unit name (default: systemctl restart -- {unit})"),
    "health_checks": Field(int, "consecutive HTTP 200 answers of the host's health_url required (default 3)",
                           minimum=1, maximum=100),
    "health_timeout": Field(int, "seconds a restarted host has to pass its health gate (default 120)",
                            minimum=1, maximum=DAY),
    "restart_timeout": Field(int, "seconds the restart command may take (default 120)", minimum=1, maximum=DAY),
    "drain_timeout": Field(int, "seconds to wait for load-balancer draining (default 300)", minimum=0, maximum=DAY),
    "batch": Field("scalar", "hosts restarted at once: N, or P% of the role's hosts (default 1)"),
})

ENVIRONMENT_FIELDS = {"service": SERVICE}
