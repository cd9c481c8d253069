"""One host's restart: drain -> restart -> health -> return, on patching's per-host state machine.

The drain, health gate and return are patch.rolling's own (``aep_ops.patch.host.HostRollout``);
this module adds the restart transition and the ``service:`` settings. Every transition is
written to the run's state file before the next begins, so a resumed run finishes a host that
was mid-way (drained, or restarted and waiting for its health gate) without restarting a host
that is done. The restart itself is repeatable: a run killed while it ran restarts that host
once more on resume, which is what the user asked for anyway.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from typing import Any

from aep_ops.base.errors import ConfigError, StepFailed, UsageError
from aep_ops.patch.host import HostRollout

STEPS = ("drain", "restart", "health", "return")
AFTER = {"drain": "drained", "restart": "restarted", "health": "healthy", "return": "done"}
DEFAULT_UNIT = "aep-api"
DEFAULT_RESTART = ("systemctl", "restart", "--", "{unit}")
# systemd's unit name characters (no "\" escapes: a unit aep-ops restarts is named plainly);
# never a leading "-" (systemctl would read an option), at most 256 characters.
_UNIT = re.compile(r"[A-Za-z0-9_:.@][A-Za-z0-9_:.@-]{0,255}")


def unit_name(value: str, where: str = "--unit") -> str:
    """The unit name, or UsageError naming ``where`` and the rule."""
    text = str(value)
    if not _UNIT.fullmatch(text):
        why = ("is empty" if not text.strip() else "begins with '-' (systemctl would read it as an option)"
               if text.startswith("-") else "is longer than 256 characters" if len(text) > 256
               else "holds a character a systemd unit name cannot")
        raise UsageError(f"{where} {text!r} {why}: give a unit name such as aep-api or aep-api.service"
                         " (letters, digits, and : _ . @ -)")
    return text


@dataclass(frozen=True)
class ServiceConfig:
    """``service.*`` of the environment, with defaults filled in."""

    unit: str = DEFAULT_UNIT
    restart_command: tuple[str, ...] = DEFAULT_RESTART
    health_checks: int = 3
    health_timeout: float = 120
    restart_timeout: float = 120
    drain_timeout: float = 300
    batch: str = "1"

    @classmethod
    def from_settings(cls, settings: Any, *, unit: str | None = None) -> ServiceConfig:
        """``unit`` (the --unit flag, already checked) wins over ``service.unit``."""
        cfg = settings.env.get("service") or {}
        out = cls()
        for key in ("health_checks", "health_timeout", "restart_timeout", "drain_timeout"):
            if cfg.get(key) is not None:
                out = replace(out, **{key: cfg[key]})
        if cfg.get("batch") is not None:
            out = replace(out, batch=str(cfg["batch"]))
        if cfg.get("restart_command"):
            out = replace(out, restart_command=tuple(cfg["restart_command"]))
        if unit:
            return replace(out, unit=unit)
        if cfg.get("unit") is not None:
            try:
                return replace(out, unit=unit_name(cfg["unit"], f"environments.{settings.env_name}.service.unit"))
            except UsageError as exc:
                raise ConfigError(str(exc)) from None
        return out

    def restart_argv(self) -> tuple[str, ...]:
        """The restart command with ``{unit}`` replaced (an argument of its own: never a shell word)."""
        return tuple(arg.replace("{unit}", self.unit) for arg in self.restart_command)


class HostRestart(HostRollout):
    """drain -> restart -> health -> return; patch.rolling's drain, health gate and return."""

    steps, after, event = STEPS, AFTER, "service.host"

    def _restart(self) -> None:
        argv = self.cfg.restart_argv()
        result = self.ex.run(argv, timeout=self.cfg.restart_timeout, user="root")
        self._audit(self.host, "restart", "ok" if result.ok else f"exit {result.exit_status}", unit=self.cfg.unit)
        if not result.ok:
            last = ((result.stderr.strip() or result.stdout.strip()).splitlines() or [""])[-1]
            raise StepFailed(f"restart failed: {result.target}: `{shlex.join(argv)}` exited {result.exit_status}:"
                             f" {last} (service.restart_command); the host stays out of service")
        self._done("restart", unit=self.cfg.unit)
