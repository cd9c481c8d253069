"""The ``certs:``, ``certificates:`` and ``acme:`` values of an environment, with their defaults
in one place (the schema is aep_ops/config/schema_certs.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aep_ops.certs.findings import Thresholds
from aep_ops.base.errors import ConfigError

DEFAULTS = {"warn_days": 30, "critical_days": 7, "parallel": 16, "timeout": 10, "random_delay": 120}
METRICS_NAME = "aep_ops_certs_{env}.prom"


def certs_settings(settings: Any) -> dict[str, Any]:
    return {**DEFAULTS, **{k: v for k, v in (settings.env.get("certs") or {}).items() if v is not None}}


def thresholds(settings: Any) -> Thresholds:
    values = certs_settings(settings)
    warn, critical = int(values["warn_days"]), int(values["critical_days"])
    if critical > warn:
        raise ConfigError(f"environments.{settings.env_name}.certs.critical_days ({critical}) is above warn_days"
                          f" ({warn}); critical must be the nearer threshold")
    return Thresholds(warn_days=warn, critical_days=critical)


def certificates(settings: Any) -> list[dict[str, Any]]:
    """The environment's certificates, each name unique (a name is a lineage and a file name)."""
    found = list(settings.env.get("certificates") or [])
    seen: set[str] = set()
    for cert in found:
        name = cert["name"]
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or name.startswith((".", "-")):
            raise ConfigError(f"environments.{settings.env_name}.certificates: name {name!r} must be letters,"
                              " digits, '.', '-' and '_' (it names files and metrics)")
        if name in seen:
            raise ConfigError(f"environments.{settings.env_name}.certificates: the name {name!r} is used twice")
        seen.add(name)
    return found


def metrics_path(settings: Any) -> Path:
    """``certs.metrics_file``, else aep_ops_certs_ENV.prom in ``metrics.dir`` (STATE_DIR/metrics)."""
    from aep_ops.metrics.textfile import metrics_dir

    configured = certs_settings(settings).get("metrics_file")
    if configured:
        return Path(configured)
    return metrics_dir(settings) / METRICS_NAME.format(env=settings.env_name)
