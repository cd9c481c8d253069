"""Moving traffic as the release runbooks do it: every change audited, journaled and read back;
an automatic rollback also told to people (a Slack webhook), without a failed notice ever
failing the rollback."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from typing import Iterator

from aep_ops.base.log import audit, get_logger
from aep_ops.base.redact import redact
from aep_ops.engine.context import RunContext
from aep_ops.release.lease import Leases
from aep_ops.release.listener import Forward, Listener
from aep_ops.release.settings import ReleaseConfig, other

log = get_logger(__name__)
NOTICE_TIMEOUT = 5


def config(ctx: RunContext) -> ReleaseConfig:
    return ReleaseConfig.from_settings(ctx.settings)


def listener(ctx: RunContext) -> Listener:
    return Listener(ctx.settings, config(ctx))


@contextmanager
def leases(ctx: RunContext) -> Iterator[Leases]:
    from aep_ops.engine.journal import Journal

    journal = Journal.open(ctx.settings)
    try:
        yield Leases(journal)
    finally:
        journal.close()


def holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def all_to(colour: str) -> dict[str, int]:
    return {colour: 100, other(colour): 0}


def split(colour: str, percent: int) -> dict[str, int]:
    """``percent`` of requests to ``colour``, the rest to the other one (ALB weights 0..999)."""
    return {colour: int(percent), other(colour): 100 - int(percent)}


def shift(ctx: RunContext, lb: Listener, weights: dict[str, int], *, why: str, sticky: int | None) -> Forward:
    """Set the weights, read them back, and leave a trace in the audit log and the journal."""
    before = lb.forward()
    if before.weights == {c: int(weights.get(c, 0)) for c in before.weights} and before.stickiness == sticky:
        ctx.progress(f"traffic already {before.describe()}")
        return before  # a resumed step finds its own change done: nothing to write or audit
    try:
        after = lb.set_weights(weights, stickiness=sticky)
    except Exception as exc:
        audit(ctx.state_dir, f"{ctx.runbook_id}:shift", target=lb.cfg.listener_arn, result="failed",
              args={"from": before.describe(), "to": Forward(dict(weights), sticky).describe(), "why": why,
                    "error": redact(str(exc))[:300]})
        raise
    audit(ctx.state_dir, f"{ctx.runbook_id}:shift", target=lb.cfg.listener_arn, result="changed",
          args={"from": before.describe(), "to": after.describe(), "why": why})
    ctx.note(f"traffic {before.describe()} -> {after.describe()} ({why})")
    ctx.progress(f"traffic now {after.describe()}")
    return after


def notify(ctx: RunContext, text: str) -> str:
    """Tell people (Slack webhook, when configured); returns what happened, audited, never raises."""
    ref = config(ctx).slack_webhook
    told = _send_to_slack(ctx, ref, text) if ref else "no release.slack_webhook configured"
    audit(ctx.state_dir, f"{ctx.runbook_id}:notify", target=ctx.env_name, result=told, args={"text": text})
    return told


def _send_to_slack(ctx: RunContext, ref: str, text: str) -> str:
    try:
        from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
        from slack_sdk.webhook import WebhookClient

        hook = WebhookClient(ctx.secret(ref), timeout=NOTICE_TIMEOUT,
                             retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
        response = hook.send(text=f"[aep-ops {ctx.env_name}] {text}")
        if response.status_code != 200:
            raise OSError(f"HTTP {response.status_code}")
        return "sent to Slack"
    except Exception as exc:  # noqa: BLE001 - a notice that fails must not stop a rollback
        why = f"the Slack notice failed ({type(exc).__name__}: {redact(str(exc))[:200]})"
        log.warning("release.notify.failed", error=why)
        ctx.note(why)
        return why
