"""``timers.install`` and ``timers.remove``: an environment's scheduled jobs as systemd units.

install: systemd verifies the rendered units and scores their exposure -> the changed units are
written (ours that are no longer rendered are disabled and removed) -> the timers are enabled,
with a daemon-reload only when a file changed. Running it again changes nothing; a run killed
half-way resumes (every file is replaced atomically, each step checks what is already there).
In production both need --yes: a timer that runs a production runbook with --yes is itself the
approval of every run it starts."""

from __future__ import annotations

from typing import Any

from aep_ops.base.errors import VerificationFailed
from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.timers import install as units_dir
from aep_ops.timers.render import render, systemctl, unit_dir


def _names(names: list[str], shown: int = 3) -> str:
    """``a, b, c and 17 more``: a plan line stays one readable line with twenty units."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _timers(files: dict[str, str]) -> list[str]:
    return sorted(name for name in files if name.endswith(".timer"))


class VerifyUnits(Step):
    id = "verify_units"
    title = "Verify the rendered units with systemd-analyze (syntax, binaries, exposure score)"
    timeout = 120

    def check(self, ctx: RunContext) -> Plan:
        from aep_ops.timers.analyze import verify
        from aep_ops.timers.units import EXPOSURE_BAR

        files = ctx.params["rendered"].files
        scores = verify(files, EXPOSURE_BAR)
        worst = max(scores.values(), default=0.0)
        return Plan.unchanged(f"{len(files)} unit(s) of {len(ctx.params['rendered'].jobs)} job(s) verified;"
                              f" worst exposure {worst:.1f} (bar {EXPOSURE_BAR:.1f})", exposure=scores)


class WriteUnits(Step):
    id = "write_units"
    title = "Write the changed units; disable and remove ours that are no longer scheduled"
    requires_approval = True
    timeout = 120

    def check(self, ctx: RunContext) -> Plan:
        directory = unit_dir(ctx.settings)
        write, remove = units_dir.differences(ctx.params["rendered"].files, units_dir.owned(directory, ctx.env_name))
        if not write and not remove:
            return Plan.unchanged(f"the {len(ctx.params['rendered'].files)} unit(s) in {directory} are current",
                                  written=[], removed=[])
        parts = [f"write {len(write)} ({_names(write)})" if write else "",
                 f"remove {len(remove)} ({_names(remove)})" if remove else ""]
        return Plan.change(f"in {directory}: " + "; ".join(p for p in parts if p), write=write, remove=remove)

    def apply(self, ctx: RunContext, plan: Plan) -> dict[str, Any]:
        directory = unit_dir(ctx.settings)
        files = ctx.params["rendered"].files
        stale_timers = [n for n in plan.details["remove"] if n.endswith(".timer") and units_dir.enabled(directory, n)]
        units_dir.Systemctl(systemctl(ctx.settings), directory).disable(stale_timers)
        units_dir.write(directory, files, plan.details["write"])
        units_dir.remove(directory, plan.details["remove"])
        return {"written": plan.details["write"], "removed": plan.details["remove"]}

    def verify(self, ctx: RunContext, outputs: dict[str, Any]) -> None:
        installed = units_dir.owned(unit_dir(ctx.settings), ctx.env_name)
        if installed != ctx.params["rendered"].files:
            raise VerificationFailed("the unit directory does not hold exactly the rendered units after writing")


class EnableTimers(Step):
    id = "enable_timers"
    title = "Enable the timers (daemon-reload first when a unit changed)"
    requires_approval = True
    timeout = 120

    def check(self, ctx: RunContext) -> Plan:
        directory = unit_dir(ctx.settings)
        control = units_dir.Systemctl(systemctl(ctx.settings), directory)
        timers = _timers(ctx.params["rendered"].files)
        missing = [t for t in timers if not units_dir.enabled(directory, t)]
        written = ctx.outputs.get("write_units") or {}
        reload = control.live and bool(written.get("written") or written.get("removed"))
        if not missing and not reload:
            return Plan.unchanged(f"{len(timers)} timer(s) enabled ({control.mode})", enabled=timers)
        what = ["daemon-reload" if reload else "", f"enable {len(missing)} timer(s) ({_names(missing)})" if missing else ""]
        return Plan.change("; ".join(w for w in what if w) + f" ({control.mode})", missing=missing, reload=reload)

    def apply(self, ctx: RunContext, plan: Plan) -> dict[str, Any]:
        control = units_dir.Systemctl(systemctl(ctx.settings), unit_dir(ctx.settings))
        reloaded = control.daemon_reload() if plan.details["reload"] else False
        control.enable(plan.details["missing"])
        return {"enabled": plan.details["missing"], "reloaded": reloaded, "mode": control.mode}

    def verify(self, ctx: RunContext, outputs: dict[str, Any]) -> None:
        directory = unit_dir(ctx.settings)
        missing = [t for t in _timers(ctx.params["rendered"].files) if not units_dir.enabled(directory, t)]
        if missing:
            raise VerificationFailed(f"still not enabled after systemctl enable: {', '.join(missing)}")


class DisableTimers(Step):
    id = "disable_timers"
    title = "Disable this environment's timers"
    requires_approval = True
    timeout = 120

    def check(self, ctx: RunContext) -> Plan:
        directory = unit_dir(ctx.settings)
        active = [n for n in _timers(units_dir.owned(directory, ctx.env_name)) if units_dir.enabled(directory, n)]
        if not active:
            return Plan.unchanged(f"no enabled timer of {ctx.env_name} in {directory}")
        return Plan.change(f"disable {len(active)} timer(s) ({_names(active)})", timers=active)

    def apply(self, ctx: RunContext, plan: Plan) -> dict[str, Any]:
        units_dir.Systemctl(systemctl(ctx.settings), unit_dir(ctx.settings)).disable(plan.details["timers"])
        return {"disabled": plan.details["timers"]}


class RemoveUnits(Step):
    id = "remove_units"
    title = "Remove this environment's unit files (daemon-reload after)"
    requires_approval = True
    timeout = 120

    def check(self, ctx: RunContext) -> Plan:
        directory = unit_dir(ctx.settings)
        names = sorted(units_dir.owned(directory, ctx.env_name))
        if not names:
            return Plan.unchanged(f"no unit of {ctx.env_name} in {directory}")
        return Plan.change(f"remove {len(names)} unit(s) from {directory} ({_names(names)})", names=names)

    def apply(self, ctx: RunContext, plan: Plan) -> dict[str, Any]:
        directory = unit_dir(ctx.settings)
        units_dir.remove(directory, plan.details["names"])
        reloaded = units_dir.Systemctl(systemctl(ctx.settings), directory).daemon_reload()
        return {"removed": plan.details["names"], "reloaded": reloaded}

    def verify(self, ctx: RunContext, outputs: dict[str, Any]) -> None:
        left = units_dir.owned(unit_dir(ctx.settings), ctx.env_name)
        if left:
            raise VerificationFailed(f"still there after removal: {', '.join(sorted(left))}")


@runbook("timers.install", steps=[VerifyUnits, WriteUnits, EnableTimers],
         summary="Install the environment's scheduled runbooks as systemd timers: verified, hardened, enabled")
def install(ctx: RunContext) -> None:
    """Render first: a bad schedule or parameter is exit 2 before anything is touched."""
    units_dir.Systemctl(systemctl(ctx.settings), unit_dir(ctx.settings))  # a unit_dir systemctl cannot use: exit 2
    ctx.params["rendered"] = render(ctx.settings, "systemd")


@runbook("timers.remove", steps=[DisableTimers, RemoveUnits],
         summary="Disable and remove the environment's aep-ops timers and services")
def remove(ctx: RunContext) -> None:
    units_dir.Systemctl(systemctl(ctx.settings), unit_dir(ctx.settings))
