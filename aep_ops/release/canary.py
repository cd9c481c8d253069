"""``release.canary``: the new colour takes a growing share of traffic, step by step, and every
step must pass its gates or traffic goes back to the stable colour at once.

A step lasts at least as long as the slowest gating alarm needs to see it (Period x
EvaluationPeriods, plus the metric lag), whatever --step-wait says. During the step the gates
are polled, so a failure rolls back as soon as it is decided; at its end the error rate must
be a pass on enough requests: too few is inconclusive, and the step holds until its deadline,
then rolls back (never passes). The run holds the release lease and renews it at every poll;
if the lease is taken away (``release.watchdog`` or ``release.rollback``), the run stops
without touching the listener again.
"""

from __future__ import annotations

import time
from typing import Any

from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed
from aep_ops.base.log import audit
from aep_ops.base.textfmt import duration
from aep_ops.engine.context import RunContext
from aep_ops.engine.step import Plan, Step
from aep_ops.release import gates
from aep_ops.release.bluegreen import wait_healthy
from aep_ops.release.lease import DONE, ROLLED_BACK
from aep_ops.release.settings import other
from aep_ops.release.traffic import all_to, holder, leases, listener, notify, shift, split

MAX_POLL = 1.0  # seconds between gate polls: a failure is caught within about this of being decidable


def parse_steps(text: Any) -> list[int]:
    """``5,25,50,100`` -> increasing shares ending at 100 (UsageError names what is wrong)."""
    parts = [p.strip() for p in str(text or "").split(",")]
    if not all(p.isdigit() and p.isascii() for p in parts):
        raise UsageError(f"--steps {str(text)[:40]!r}: expected increasing percentages ending in 100, e.g. 5,25,50,100")
    steps = [int(p) for p in parts]
    if any(not 1 <= s <= 100 for s in steps) or steps != sorted(set(steps)) or steps[-1] != 100 or len(steps) > 20:
        raise UsageError(f"--steps {str(text)[:40]!r}: each step 1..100, increasing, at most 20, the last 100")
    return steps


class LeaseLost(StepFailed):
    """Another actor took this canary's lease: it must not touch the listener again."""


class PlanCanary(Step):
    id = "plan_canary"
    title = "Plan: stable and canary colours, gates, and how long each step lasts"

    def check(self, ctx):
        lb = listener(ctx)
        cfg = lb.cfg
        with leases(ctx) as book:
            lease = book.get(ctx.env_name)
        ours = lease is not None and lease.run_id == ctx.run_id
        if lease is not None and lease.active and not ours:
            raise UsageError(f"{lease.runbook} run {lease.run_id} is moving {ctx.env_name}'s traffic (lease until"
                             f" {lease.expires_at}, {lease.holder}); let it finish or `inv release.rollback --env"
                             f" {ctx.env_name}`. Nothing was changed")
        now = lb.forward()
        stable = lease.back_to if ours else now.serving()
        if stable is None:
            raise UsageError(f"traffic is split ({now.describe()}) and no canary of this run holds it: finish or roll"
                             " back the release in progress first (`inv release.rollback`). Nothing was changed")
        canary = other(stable)
        alarms = gates.Alarms(ctx.settings, cfg)
        firing = alarms.firing()
        if firing and not ctx.params["ignore_alarm"]:
            raise UsageError(f"gating alarm(s) already in ALARM: {', '.join(firing)}; a canary judged by them would"
                             " fail at once, or hide a real failure. Fix them first, or start with --ignore-alarm"
                             " (audited; those alarms are then left out of the gates). Nothing was changed")
        if firing and not ctx.dry_run and not ours:
            audit(ctx.state_dir, f"{ctx.runbook_id}:ignore_alarm", target=ctx.env_name, result="ignored",
                  args={"alarms": ", ".join(firing), "run_id": ctx.run_id})
        floor = alarms.minimum_wait()
        wait = max(float(ctx.params["step_wait_seconds"]), floor)
        deadline = max(wait, float(ctx.params["step_deadline_seconds"] or 3 * wait))
        health = wait_healthy(ctx, canary, timeout=cfg.health_timeout)
        if health.status != gates.PASS:
            raise StepFailed(f"{health.why}; the canary does not start. Deploy {canary} again, then resume this run")
        summary = (f"{stable} is stable, {canary} is the canary; steps {', '.join(map(str, ctx.params['step_list']))}%,"
                   f" each {duration(wait)} (hold up to {duration(deadline)})")
        if wait > float(ctx.params["step_wait_seconds"]):
            summary += f"; --step-wait raised to the alarms' {duration(floor)}"
        return Plan.unchanged(summary, stable=stable, canary=canary, wait=wait, deadline=deadline, ignored=firing,
                              stickiness=now.stickiness)


class RunCanary(Step):
    id = "run_canary"
    title = "Shift traffic step by step, gating each step; roll back on any failure"
    requires_approval = True

    def check(self, ctx):
        with leases(ctx) as book:
            lease = book.get(ctx.env_name)
        if lease is not None and lease.run_id == ctx.run_id and lease.state == DONE:
            return Plan.unchanged(f"{lease.released} was promoted to 100%")
        if lease is not None and lease.run_id == ctx.run_id and lease.state == ROLLED_BACK:
            raise StepFailed(f"this canary was rolled back ({lease.note}); traffic is on {lease.back_to}. Start a new"
                             " canary instead of resuming this one")
        canary = ctx.output("plan_canary", "canary")
        return Plan.change(f"{canary} through {', '.join(map(str, ctx.params['step_list']))}%")

    def apply(self, ctx, plan):
        return CanaryRun(ctx).run()


class CanaryRun:
    """One canary's progress: the lease, the steps, and the rollback when a gate fails."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx, self.lb = ctx, listener(ctx)
        self.cfg = self.lb.cfg
        facts = ctx.step_outputs("plan_canary")
        self.stable, self.canary = facts["stable"], facts["canary"]
        self.wait, self.deadline, self.ignored = facts["wait"], facts["deadline"], set(facts["ignored"])
        self.sticky = self.lb.capped_stickiness(facts["stickiness"])
        self.original_sticky = facts["stickiness"]
        self.poll = min(MAX_POLL, max(0.2, self.wait / 20))
        self.alarms = gates.Alarms(ctx.settings, self.cfg)
        self.results: list[dict[str, Any]] = []
        self.book: Any = None  # the journal's leases, open for the whole run (renewed at every poll)

    def run(self) -> dict[str, Any]:
        with leases(self.ctx) as self.book:
            start = self._hold_lease()
            steps = self.ctx.params["step_list"]
            for percent in steps[steps.index(start) if start in steps else 0:]:
                self._step(percent)
            if self.original_sticky != self.sticky:
                shift(self.ctx, self.lb, all_to(self.canary), why="stickiness restored", sticky=self.original_sticky)
            self.book.finish(self.ctx.env_name, self.ctx.run_id, DONE, note=f"{self.canary} promoted")
        return {"promoted": self.canary, "steps": self.results}

    def _hold_lease(self) -> int:
        """Take the lease (or, resuming, take our own back): the step to start from."""
        ctx, book = self.ctx, self.book
        lease = book.get(ctx.env_name)
        if lease is not None and lease.run_id == ctx.run_id:
            if not book.resume(ctx.env_name, ctx.run_id, self.cfg.lease_seconds):
                raise LeaseLost(f"this canary's lease was taken away ({book.get(ctx.env_name).note});"
                                " start a new canary")
            ctx.note(f"resumed with the lease; re-running the {lease.weight or ctx.params['step_list'][0]}% step")
            return lease.weight
        if book.take(ctx.env_name, ctx.run_id, ctx.runbook_id, back_to=self.stable, released=self.canary,
                     holder=holder(), seconds=self.cfg.lease_seconds) is None:
            raise StepFailed(f"another run took the release lease of {ctx.env_name} first; nothing was changed")
        return 0

    def _renew(self, weight: int | None = None) -> None:
        if not self.book.renew(self.ctx.env_name, self.ctx.run_id, self.cfg.lease_seconds, weight=weight):
            lease = self.book.get(self.ctx.env_name)
            raise LeaseLost(f"this canary's lease is gone ({lease.note if lease else 'no lease'}); traffic is"
                            " left to whoever took it. Nothing more was changed")

    def _step(self, percent: int) -> None:
        ctx = self.ctx
        self._renew()
        shift(ctx, self.lb, split(self.canary, percent), why=f"canary step {percent}%", sticky=self.sticky)
        self._renew(weight=percent)
        rate = gates.ErrorRate(ctx.settings, self.lb, self.canary)
        rate.start()
        began = time.monotonic()
        while True:
            time.sleep(self.poll)
            self._renew()
            elapsed = time.monotonic() - began
            verdicts = [gates.health(ctx.settings, self.lb, self.canary), self._alarms(), rate.gate()]
            failed = [v for v in verdicts if v.status == gates.FAIL]
            if failed:
                self._rollback(percent, failed[0], elapsed)
            errors = verdicts[2]
            if elapsed >= self.wait and errors.status == gates.PASS:
                self.results.append({"percent": percent, "seconds": round(elapsed, 1), **errors.figures})
                ctx.note(f"step {percent}% passed after {duration(elapsed)}: {errors.why}")
                ctx.progress(f"step {percent}% passed: {errors.why}")
                return
            if elapsed >= self.deadline:
                self._rollback(percent, errors, elapsed)
            if elapsed >= self.wait:
                ctx.progress(f"step {percent}% holding: {errors.why}")

    def _alarms(self) -> gates.Verdict:
        firing = [a for a in self.alarms.firing() if a not in self.ignored]
        if firing:
            return gates.Verdict("alarms", gates.FAIL, f"alarm(s) in ALARM: {', '.join(firing)}")
        return gates.Verdict("alarms", gates.PASS, "no gating alarm in ALARM")

    def _rollback(self, percent: int, verdict: gates.Verdict, elapsed: float) -> None:
        ctx, detected = self.ctx, time.monotonic()
        why = f"{verdict.gate} {verdict.status} at the {percent}% step after {duration(elapsed)}: {verdict.why}"
        ctx.progress(f"rolling back: {why}")
        self._renew()  # still ours: nobody else is moving the traffic
        shift(ctx, self.lb, all_to(self.stable), why=f"canary rollback ({verdict.gate})", sticky=self.original_sticky)
        took = time.monotonic() - detected
        self.book.finish(ctx.env_name, ctx.run_id, ROLLED_BACK, note=why)
        told = notify(ctx, f"canary {self.canary} rolled back on {ctx.env_name}: {why}; all traffic on {self.stable}")
        details = {"gate": verdict.gate, "status": verdict.status, "percent": percent, "figures": verdict.figures,
                   "rollback_seconds": round(took, 3), "steps": self.results, "notice": told}
        raise VerificationFailed(f"canary {self.canary} failed: {why}. All traffic is back on {self.stable}"
                                 f" (read back, {took:.1f} s after detection); {told}", details=details)


class VerifyPromoted(Step):
    id = "verify_promoted"
    title = "Verify: all traffic on the canary colour, its targets healthy"
    soft = True

    def check(self, ctx):
        if ctx.dry_run:
            return Plan.unknown("the canary has not run")
        canary, lb = ctx.output("plan_canary", "canary"), listener(ctx)
        now = lb.forward()
        if now.weights != all_to(canary):
            raise VerificationFailed(f"the listener reads {now.describe()}, not all traffic on {canary}")
        verdict = gates.health(ctx.settings, lb, canary)
        if verdict.status != gates.PASS:
            raise VerificationFailed(verdict.why)
        return Plan.unchanged(f"all traffic on {canary}; {verdict.why}")
