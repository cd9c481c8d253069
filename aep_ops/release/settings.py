"""An environment's release configuration, read once with its defaults and checked, so that a
step never meets a missing ARN half-way through a traffic shift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aep_ops.base.errors import ConfigError

COLOURS = ("blue", "green")


def other(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


@dataclass(frozen=True)
class ReleaseConfig:
    listener_arn: str
    target_groups: dict[str, str]  # colour -> target group ARN
    alarms: tuple[str, ...] = ()
    metric_lag_seconds: int = 60
    metrics_endpoint: str = "/metrics"
    health_endpoint: str = ""
    requests_metric: str = "http_requests_total"
    status_label: str = "code"
    min_requests: int = 100
    max_error_permille: int = 10
    lease_seconds: int = 300
    max_stickiness_seconds: int = 60
    health_timeout: int = 300
    slack_webhook: Any = None  # a secret reference, resolved only when a notice is sent

    @classmethod
    def from_settings(cls, settings: Any) -> "ReleaseConfig":
        cfg = dict(settings.env.get("release") or {})
        where = f"environments.{settings.env_name}.release"
        if not str(cfg.get("listener_arn") or "").strip():
            raise ConfigError(f"{where}.listener_arn is not set: name the ALB listener whose traffic the release"
                              " moves (aep-ops config.show shows the configuration)")
        groups = dict(cfg.get("target_groups") or {})
        missing = [c for c in COLOURS if not str(groups.get(c) or "").strip()]
        if missing:
            raise ConfigError(f"{where}.target_groups.{missing[0]} is not set: give the ARN of both the blue and"
                              " the green target group")
        if groups["blue"] == groups["green"]:
            raise ConfigError(f"{where}.target_groups: blue and green are the same target group")
        for name in ("metrics_endpoint", "health_endpoint"):
            value = cfg.get(name)
            if value and not str(value).startswith("/"):
                raise ConfigError(f"{where}.{name} {str(value)[:60]!r}: must start with /")
        known = {k: v for k, v in cfg.items() if k in cls.__dataclass_fields__ and v is not None}
        known.update(target_groups={c: groups[c] for c in COLOURS}, alarms=tuple(cfg.get("alarms") or ()))
        return cls(**known)

    def colour_of(self, arn: str) -> str | None:
        return next((c for c, a in self.target_groups.items() if a == arn), None)

    @property
    def max_error_rate(self) -> float:
        return self.max_error_permille / 1000
