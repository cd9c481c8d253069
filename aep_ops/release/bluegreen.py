"""``release.bluegreen`` and ``release.rollback``: all traffic from one colour to the other in one
verified change, the old colour kept warm until the change has held for the deregistration delay.

Why the order matters: taking the old colour away before the new weights have propagated gives
503s (argo-rollouts#701, #3333). So: the new colour's targets healthy first, then one listener
change read back, then the wait, and only then is the old colour called drained (it stays
registered, so ``release.rollback`` is one change away). Stickiness is capped while traffic
shifts, or clients stuck to the old colour would stay there for the cookie's whole life.
"""

from __future__ import annotations

import time
from typing import Any

from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed
from aep_ops.base.textfmt import duration
from aep_ops.engine.context import RunContext
from aep_ops.engine.step import Plan, Step
from aep_ops.release import gates
from aep_ops.release.settings import COLOURS, other
from aep_ops.release.traffic import all_to, holder, leases, listener, notify, shift

QUIET_WINDOW = 2.0  # seconds the old colour's request counters must stand still to call it drained
QUIET_PATIENCE = 60.0  # after the delay, how long in-flight and late-routed requests may take to end


def wait_healthy(ctx: RunContext, colour: str, *, timeout: float) -> gates.Verdict:
    """The colour's targets all healthy within ``timeout`` (a dry run looks once)."""
    lb = listener(ctx)
    deadline = time.monotonic() + (0 if ctx.dry_run else timeout)
    while True:
        verdict = gates.health(ctx.settings, lb, colour)
        if verdict.status == gates.PASS or time.monotonic() >= deadline:
            return verdict
        ctx.progress(f"waiting for {colour} to be healthy: {verdict.why}")
        time.sleep(min(5.0, max(0.5, timeout / 60)))


def refuse_if_leased(ctx: RunContext) -> None:
    with leases(ctx) as book:
        lease = book.get(ctx.env_name)
    if lease is not None and lease.active:
        state = "expired at" if lease.expired() else "held until"
        raise UsageError(f"{lease.runbook} run {lease.run_id} is moving {ctx.env_name}'s traffic (lease {state}"
                         f" {lease.expires_at}, {lease.holder}); let it finish, or return traffic with"
                         f" `inv release.rollback --env {ctx.env_name}`. Nothing was changed")


class PlanSwitch(Step):
    id = "plan_switch"
    title = "Plan: where traffic is now, and where it goes"

    def check(self, ctx):
        to = ctx.params["to"]
        refuse_if_leased(ctx)
        now = listener(ctx).forward()
        facts = {"to": to, "before": now.weights, "stickiness": now.stickiness, "was": now.describe()}
        if now.serving() == to:
            return Plan.unchanged(f"all traffic is already on {to} ({now.describe()})", **facts)
        return Plan.unchanged(f"traffic is {now.describe()}; it goes all to {to}", **facts)


class NewColourHealth(Step):
    id = "new_colour_health"
    title = "Gate: every target of the new colour healthy"

    def check(self, ctx):
        to = ctx.params["to"]
        verdict = wait_healthy(ctx, to, timeout=listener(ctx).cfg.health_timeout)
        if verdict.status != gates.PASS:
            raise StepFailed(f"{verdict.why}; traffic stays where it is. Fix or redeploy {to}, then resume this run")
        return Plan.unchanged(verdict.why)


class EnsureSwitched(Step):
    id = "ensure_switched"
    title = "Switch the listener to the new colour, read it back"
    requires_approval = True

    def check(self, ctx):
        to, now = ctx.params["to"], listener(ctx).forward()
        if now.weights == all_to(to):
            return Plan.unchanged(f"the listener sends all traffic to {to}")
        return Plan.change(f"{now.describe()} -> {to} 100%")

    def apply(self, ctx, plan):
        to, lb = ctx.params["to"], listener(ctx)
        verdict = gates.health(ctx.settings, lb, to)  # facts go stale: look again right before the change
        if verdict.status != gates.PASS:
            raise StepFailed(f"{verdict.why}; nothing was changed. Fix {to}, then resume this run")
        now = lb.forward()
        after = shift(ctx, lb, all_to(to), why=f"blue-green switch to {to}", sticky=lb.capped_stickiness(now.stickiness))
        with leases(ctx) as book:
            book.record(ctx.env_name, ctx.run_id or "dry-run", ctx.runbook_id, released=to, previous=other(to),
                        holder=holder())
        return {"switched_at": time.time(), "from": other(to), "weights": after.weights}

    def verify(self, ctx, outputs):
        now = listener(ctx).forward()
        if now.weights != all_to(ctx.params["to"]):
            raise VerificationFailed(f"the listener reads {now.describe()} after the switch to {ctx.params['to']}")


class DrainOld(Step):
    id = "drain_old"
    title = "Keep the old colour warm for the deregistration delay, then confirm it is drained"

    def check(self, ctx):
        if ctx.dry_run:
            return Plan.unknown("the switch has not run")
        switched_at = (ctx.outputs.get("ensure_switched") or {}).get("switched_at")
        if switched_at is None:
            return Plan.unchanged("traffic was on the new colour before this run; nothing to drain")
        old = other(ctx.params["to"])
        left = switched_at + listener(ctx).deregistration_delay(old) - time.time()
        return Plan.change(f"wait {duration(max(0.0, left))} more, then confirm {old} serves no new requests")

    def apply(self, ctx, plan):
        to, lb = ctx.params["to"], listener(ctx)
        old = other(to)
        until = ctx.output("ensure_switched", "switched_at") + lb.deregistration_delay(old)
        while (left := until - time.time()) > 0:
            if (now := lb.forward()).weights != all_to(to):
                raise StepFailed(f"the listener no longer sends all traffic to {to} ({now.describe()});"
                                 " someone else moved it. Look before going on")
            ctx.progress(f"{old} kept warm: {duration(left)} of the deregistration delay left")
            time.sleep(min(10.0, left))
        quiet = old_quiet(ctx, lb, old)
        original = ctx.output("plan_switch", "stickiness")
        if lb.forward().stickiness != original:
            shift(ctx, lb, all_to(to), why="stickiness restored after the switch", sticky=original)
        return {"drained_at": time.time(), "old": old, "quiet": quiet}

    def verify(self, ctx, outputs):
        now = listener(ctx).forward()
        if now.weights != all_to(ctx.params["to"]):
            raise VerificationFailed(f"the listener reads {now.describe()}, not all traffic on {ctx.params['to']}")


def old_quiet(ctx: RunContext, lb: Any, old: str) -> str:
    """The old colour's request counters stand still for a window (when its metrics can be read at
    all), waiting up to QUIET_PATIENCE for the last requests routed before the switch to finish."""
    deadline = time.monotonic() + QUIET_PATIENCE
    while True:
        rate = gates.ErrorRate(ctx.settings, lb, old)
        rate.start()
        if not rate.baseline:
            return f"{old}'s metrics could not be read; drained by the deregistration delay alone"
        time.sleep(QUIET_WINDOW)
        served = rate.gate().figures["requests"]
        if not served:
            return f"{old} served no request in {QUIET_WINDOW:g} s"
        if time.monotonic() >= deadline:
            raise StepFailed(f"{old} still serves requests ({served} in the last {QUIET_WINDOW:g} s) although all"
                             f" traffic has been on {ctx.params['to']} for longer than the deregistration delay:"
                             f" something else sends requests to {old}. Find it before retiring {old}; resume this"
                             " run to check again")
        ctx.progress(f"{old} served {served} request(s) in the last {QUIET_WINDOW:g} s; waiting for it to drain")


# -- release.rollback ------------------------------------------------------------------------------


class PlanRollback(Step):
    id = "plan_rollback"
    title = "Plan: the colour traffic returns to"

    def check(self, ctx):
        now = listener(ctx).forward()
        with leases(ctx) as book:
            lease = book.get(ctx.env_name)
        to = ctx.params["to"] or (lease.back_to if lease else None)
        if not to:
            raise UsageError(f"no release of {ctx.env_name} is recorded, so there is no 'back' to return to (traffic"
                             f" is {now.describe()}); say where it goes with --to blue|green. Nothing was changed")
        origin = f"{lease.runbook} run {lease.run_id} ({lease.state})" if lease else "--to"
        facts = {"to": to, "was": now.describe(), "lease": lease.run_id if lease and lease.active else None}
        if now.weights == all_to(to) and not (lease and lease.active):
            return Plan.unchanged(f"all traffic is already on {to}", **facts)
        return Plan.unchanged(f"traffic is {now.describe()}; back to {to} (from {origin})", **facts)


class EnsureRolledBack(Step):
    id = "ensure_rolled_back"
    title = "Return all traffic to the stable colour in one change, read it back"
    requires_approval = True

    def check(self, ctx):
        to, lb = ctx.output("plan_rollback", "to"), listener(ctx)
        now = lb.forward()
        if now.weights == all_to(to) and not ctx.output("plan_rollback", "lease"):
            return Plan.unchanged(f"all traffic is on {to}")
        verdict = gates.health(ctx.settings, lb, to)
        if verdict.status != gates.PASS:
            raise StepFailed(f"{verdict.why}: returning traffic there would not help. Nothing was changed; fix {to}"
                             " or choose the other colour with --to")
        return Plan.change(f"{now.describe()} -> {to} 100%")

    def apply(self, ctx, plan):
        to, lb = ctx.output("plan_rollback", "to"), listener(ctx)
        with leases(ctx) as book:
            taken = book.revoke(ctx.env_name, note=f"rolled back by {ctx.runbook_id} run {ctx.run_id}",
                                expired_only=False)
        if taken is not None:
            ctx.note(f"took the release lease from {taken.runbook} run {taken.run_id} ({taken.holder})")
        after = shift(ctx, lb, all_to(to), why="rollback", sticky=lb.forward().stickiness)
        told = notify(ctx, f"{ctx.env_name}: traffic rolled back to {to} by {ctx.runbook_id} run {ctx.run_id}")
        return {"to": to, "weights": after.weights, "revoked": taken.run_id if taken else None, "notice": told}

    def verify(self, ctx, outputs):
        now = listener(ctx).forward()
        if now.weights != all_to(outputs["to"]):
            raise VerificationFailed(f"the listener reads {now.describe()} after the rollback to {outputs['to']}")


def colour_flag(flag: str, value: Any, *, required: bool) -> str:
    text = str(value or "").strip().lower()
    if not text and not required:
        return ""
    if text not in COLOURS:
        raise UsageError(f"{flag} {str(value)[:20]!r}: expected blue or green")
    return text
