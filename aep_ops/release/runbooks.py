"""The release runbooks: blue-green switch, rollback, canary with gates, and the canary watchdog.

All four move one ALB listener, so they share one lock per environment (``lock="release"``):
never two traffic changes at once. Heavy imports (boto3, prometheus_client) happen inside the
steps: the CLI imports this module to list tasks.
"""

from __future__ import annotations

from aep_ops.base.errors import UsageError
from aep_ops.base.timefmt import parse_span
from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.release.bluegreen import (DrainOld, EnsureRolledBack, EnsureSwitched, NewColourHealth, PlanRollback,
                                       PlanSwitch, colour_flag)
from aep_ops.release.canary import PlanCanary, RunCanary, VerifyPromoted, parse_steps
from aep_ops.release.settings import ReleaseConfig
from aep_ops.release.watchdog import RollbackExpired

MAX_STEP = 6 * 3600


@runbook("release.bluegreen", steps=[PlanSwitch, NewColourHealth, EnsureSwitched, DrainOld], lock="release",
         summary="Blue-green switch: all traffic to the other colour once it is healthy, old colour kept warm",
         help={"to": "the colour that takes all traffic: blue or green"})
def bluegreen(ctx: RunContext, *, to: str = "") -> None:
    ctx.params["to"] = colour_flag("--to", to, required=True)
    ReleaseConfig.from_settings(ctx.settings)


@runbook("release.rollback", steps=[PlanRollback, EnsureRolledBack], lock="release",
         summary="Return all traffic to the stable colour in one verified change",
         help={"to": "blue or green (default: where the last release came from)"})
def rollback(ctx: RunContext, *, to: str = "") -> None:
    ctx.params["to"] = colour_flag("--to", to, required=False)
    ReleaseConfig.from_settings(ctx.settings)


@runbook("release.canary", steps=[PlanCanary, RunCanary, VerifyPromoted], lock="release",
         summary="Canary release: traffic to the new colour in steps, each gated; automatic rollback",
         help={"steps": "percentages of traffic for the new colour, increasing, ending in 100 (default 5,25,50,100)",
               "step_wait": "how long each step lasts at least, e.g. 5m (raised to what the gating alarms need)",
               "step_deadline": "how long a step may hold for enough traffic before it rolls back (default 3x the"
                                " step's wait)",
               "ignore_alarm": "start although a gating alarm is in ALARM (audited; that alarm no longer gates)"})
def canary(ctx: RunContext, *, steps: str = "5,25,50,100", step_wait: str = "5m", step_deadline: str = "",
           ignore_alarm: bool = False) -> None:
    wait = parse_span("--step-wait", step_wait, minimum=1, maximum=MAX_STEP)
    hold = parse_span("--step-deadline", step_deadline, minimum=1, maximum=3 * MAX_STEP) if str(step_deadline).strip() \
        else 0.0
    if hold and hold < wait:
        raise UsageError(f"--step-deadline {step_deadline} is shorter than --step-wait {step_wait}")
    ReleaseConfig.from_settings(ctx.settings)
    ctx.params.update(step_list=parse_steps(steps), step_wait_seconds=wait, step_deadline_seconds=hold)


@runbook("release.watchdog", steps=[RollbackExpired],
         summary="Roll back a canary whose lease expired (its process died or hangs); run by a timer")
def watchdog(ctx: RunContext) -> None:
    """Takes no parameters; an environment without releases is fine (its step says so)."""
