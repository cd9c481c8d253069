"""Throwaway runbooks for engine tests, loaded as a plugin (AEP_OPS_PLUGINS) by the CLI tests.

``test.canary`` resolves a secret and then tries to leak it everywhere it could leak: a log
event, its outputs, a progress line, an audit argument and an exception message.
"""

from __future__ import annotations

from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.errors import StepFailed
from aep_ops.log import get_logger

log = get_logger(__name__)


class UseSecret(Step):
    id = "use_secret"
    title = "Resolve the database password and use it"

    def check(self, ctx):
        return Plan.change("use the password")

    def apply(self, ctx, plan):
        password = ctx.secret(ctx.env["database"]["password"])
        log.info("connecting", dsn=f"postgresql://app:{password}@db/aep")
        ctx.progress(f"using {password}")
        import logging

        logging.getLogger("paramiko.transport").warning("auth with %s", password)
        return {"dsn": f"postgresql://app:{password}@db/aep"}


class FailWithSecret(Step):
    id = "fail_with_secret"
    title = "Fail with the secret in the message"

    def check(self, ctx):
        return Plan.change("fail")

    def apply(self, ctx, plan):
        password = ctx.secret(ctx.env["database"]["password"])
        raise StepFailed(f"could not log in as app with password {password}")


@runbook("test.canary", steps=[UseSecret, FailWithSecret], summary="Try to leak a secret (tests only)")
def canary(ctx):
    """No parameters."""
