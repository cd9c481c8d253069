"""From an environment's settings to its rendered units or crontab: where the program, the
state directory and the configuration file are, as the timer's process must find them
(another working directory, no terminal, none of the caller's shell)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aep_ops.timers.jobs import Job, scheduled_jobs

DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_SYSTEMCTL = "/usr/bin/systemctl"


@dataclass
class Rendered:
    jobs: list[Job]
    files: dict[str, str]  # unit file name -> text (systemd), or {"aep-ops-ENV": crontab} (cron)


def place(settings: Any) -> dict[str, Any]:
    """The values every unit and cron line carries (validated where they are written)."""
    timers = settings.env.get("timers") or {}
    configured = settings.get("timers.command")
    config_file = os.environ.get("AEP_OPS_CONFIG")
    return {"command": str(configured or Path(sys.executable).parent / "aep-ops"),
            "state_dir": str(settings.state_dir.resolve()),
            "user": str(timers.get("user") or "root"),
            "config_file": str(Path(config_file).resolve()) if config_file else None}


def render(settings: Any, fmt: str = "systemd") -> Rendered:
    jobs = scheduled_jobs(settings)
    where = place(settings)
    if fmt == "cron":
        from aep_ops.timers.calendar import elapses
        from aep_ops.timers.cron import crontab

        normalized = {e: s.normalized for e, s in elapses([j.schedule for j in jobs if j.schedule], 1).items()}
        user = str(settings.get("timers.crontab_user") or where["user"])
        text = crontab(jobs, normalized, command=where["command"], state_dir=where["state_dir"], user=user,
                       config_file=where["config_file"])
        return Rendered(jobs, {f"aep-ops-{settings.env_name}": text})
    from aep_ops.timers.units import unit_files

    writable = [str(p) for p in ((settings.env.get("timers") or {}).get("read_write_paths") or [])]
    metrics_dir = settings.get("metrics.dir")  # the run's metrics go there (node_exporter's directory)
    if metrics_dir and str(metrics_dir) not in writable:
        writable.append(str(metrics_dir))
    return Rendered(jobs, unit_files(jobs, writable=writable, **where))


def unit_dir(settings: Any) -> Path:
    return Path(settings.get("timers.unit_dir") or DEFAULT_UNIT_DIR)


def systemctl(settings: Any) -> str:
    return str(settings.get("timers.systemctl") or DEFAULT_SYSTEMCTL)
