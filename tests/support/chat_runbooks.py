"""Runbooks for the chat front door's tests, loaded as a plugin (AEP_OPS_PLUGINS) by the chat
service and by the ``aep-ops`` processes it starts; their Markdown (``chat: true``) is in
tests/support/runbooks.

- ``chatcheck.look``: read-only, changes nothing (the RBAC matrix's read-only runbook).
- ``chatcheck.leak``: resolves the environment's ``database.password`` (the canary) and hands it
  to the plan, a progress line, a journal note, the run's summary and, with ``--fail``, the error.
"""

from __future__ import annotations

from aep_ops.base.errors import StepFailed
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step


class Look(Step):
    id = "look"
    title = "Look at the environment"

    def check(self, ctx):
        return Plan.unchanged(f"looked at {ctx.env_name}")


@runbook("chatcheck.look", steps=[Look], summary="Look at the environment (changes nothing)",
         mutating=False, read_only=True)
def look(ctx):
    """Tests only."""


class UseSecret(Step):
    id = "use_secret"
    title = "Log in with the database password"

    def check(self, ctx):
        return Plan.change("log in with " + ctx.secret(ctx.env["database"]["password"]))

    def apply(self, ctx, plan):
        secret = ctx.secret(ctx.env["database"]["password"])
        ctx.progress(f"using {secret}")
        ctx.note(f"logged in with {secret}")
        ctx.summary["dsn"] = f"postgresql://app:{secret}@db/aep"
        if ctx.params["fail"]:
            raise StepFailed(f"login refused for app:{secret}\nDETAIL: password {secret!r} rejected")
        return {"dsn": f"postgresql://app:{secret}@db/aep"}


@runbook("chatcheck.leak", steps=[UseSecret], summary="Use a secret wherever a chat reply could show it",
         help={"fail": "fail the step, with the secret in its error"})
def leak(ctx, *, fail: bool = False):
    """Tests only."""
