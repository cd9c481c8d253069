"""The ``incident:`` values of an environment with their defaults in one place (the schema is
aep_ops/config/schema_incident.py). Read once per diagnosis and passed down typed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_ERROR_PATTERN = r"ERROR|FATAL|[Pp]anic|Unhandled|[Uu]ncaught"
DEFAULT_APP_LOGS = ("/var/log/aep/*.log",)


@dataclass(frozen=True)
class HostThresholds:
    load_percent: int = 200
    cpu_percent: int = 90
    memory_percent: int = 90
    swap_percent: int = 50
    disk_percent: int = 85
    inodes_percent: int = 85
    clock_offset_ms: int = 500
    critical_percent: int = 95  # disk and inodes: critical from here (not configurable: a full disk is)


@dataclass(frozen=True)
class IncidentConfig:
    env_name: str
    deadline: float = 10.0
    parallel: int = 32
    roles: tuple[str, ...] = ()
    service_unit: str = "aep-api"
    app_logs: tuple[str, ...] = DEFAULT_APP_LOGS
    error_pattern: str = DEFAULT_ERROR_PATTERN
    expected_ports: tuple[int, ...] = ()
    health_endpoints: tuple[str, ...] = ()
    health_probes: int = 3
    latency_ms: int = 1000
    target_groups: tuple[str, ...] = ()
    auto_scaling_groups: tuple[str, ...] = ()
    alarm_prefix: str = ""
    host: HostThresholds = field(default_factory=HostThresholds)

    @classmethod
    def from_settings(cls, settings: Any) -> IncidentConfig:
        env = settings.env
        cfg = env.get("incident") or {}
        host = {k: v for k, v in (cfg.get("host") or {}).items() if v is not None}
        patching, release = env.get("patching") or {}, env.get("release") or {}
        groups = cfg.get("target_groups") or [*(patching.get("target_group_arns") or []),
                                              *((release.get("target_groups") or {}).values())]
        asgs = cfg.get("auto_scaling_groups") or ([patching["asg_name"]] if patching.get("asg_name") else [])
        return cls(
            env_name=settings.env_name,
            deadline=float(cfg.get("deadline_seconds") or 10),
            parallel=int(cfg.get("parallel") or 32),
            roles=tuple(cfg.get("roles") or ()),
            service_unit=cfg.get("service_unit") or "aep-api",
            app_logs=tuple(cfg.get("app_logs") or DEFAULT_APP_LOGS),
            error_pattern=cfg.get("error_pattern") or DEFAULT_ERROR_PATTERN,
            expected_ports=tuple(cfg.get("expected_ports") or ()),
            health_endpoints=tuple(cfg.get("health_endpoints") or ()),
            health_probes=int(cfg.get("health_probes") or 3),
            latency_ms=int(((cfg.get("app") or {}).get("latency_ms")) or 1000),
            target_groups=tuple(dict.fromkeys(g for g in groups if g)),
            auto_scaling_groups=tuple(asgs),
            alarm_prefix=cfg.get("alarm_prefix") or "",
            host=HostThresholds(**host),
        )
