"""``release.watchdog``: roll back a canary whose lease expired (its process was killed, or hangs).

Run by a timer every minute. It takes no release lock (a live canary holds that, and this must not
wait behind it); the lease decides: only an *expired* lease is taken, in one conditional UPDATE,
so two watchdogs, or a watchdog and a canary resuming, never both act.
"""

from __future__ import annotations

from aep_ops.base.errors import VerificationFailed
from aep_ops.engine.step import Plan, Step
from aep_ops.release.traffic import all_to, leases, listener, notify, shift


class RollbackExpired(Step):
    id = "rollback_expired"
    title = "Return traffic from a canary whose lease expired"

    def check(self, ctx):
        if not ctx.env.get("release"):  # its timer is installed everywhere; no release, nothing to watch
            return Plan.unchanged(f"{ctx.env_name} has no release configuration; nothing to watch")
        listener(ctx)  # a half-made release configuration is exit 2 here, not a silent no-op
        with leases(ctx) as book:
            lease = book.get(ctx.env_name)
        if lease is None or not lease.active:
            return Plan.unchanged("no release in progress")
        if not lease.expired():
            return Plan.unchanged(f"{lease.runbook} run {lease.run_id} is alive (lease until {lease.expires_at})")
        return Plan.change(f"{lease.runbook} run {lease.run_id} ({lease.holder}) went silent; its lease expired at"
                           f" {lease.expires_at}: all traffic back to {lease.back_to}")

    def apply(self, ctx, plan):
        lb = listener(ctx)
        with leases(ctx) as book:
            lease = book.revoke(ctx.env_name, note=f"lease expired; rolled back by release.watchdog run {ctx.run_id}",
                                expired_only=True)
        if lease is None:
            ctx.note("the lease was renewed or settled by someone else first; nothing to do")
            return {"rolled_back": None}
        after = shift(ctx, lb, all_to(lease.back_to), why=f"watchdog: lease of run {lease.run_id} expired",
                      sticky=lb.forward().stickiness)
        told = notify(ctx, f"canary run {lease.run_id} on {ctx.env_name} went silent (lease expired at"
                           f" {lease.expires_at}); all traffic returned to {lease.back_to}")
        return {"rolled_back": lease.run_id, "to": lease.back_to, "weights": after.weights, "notice": told}

    def verify(self, ctx, outputs):
        if outputs.get("rolled_back"):
            now = listener(ctx).forward()
            if now.weights != all_to(outputs["to"]):
                raise VerificationFailed(f"the listener reads {now.describe()} after the watchdog's rollback")
