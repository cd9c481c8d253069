"""Throwaway runbooks for the front-door convention tests, loaded as a plugin (AEP_OPS_PLUGINS).

``test.refuse`` refuses inside a step (bad input found only when the step looks: exit 2);
``test.multiline`` plans and fails with texts of several lines, as a PostgreSQL error has.
"""

from __future__ import annotations

from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import StepFailed, UsageError


class RefuseInStep(Step):
    id = "refuse_in_step"
    title = "Refuse what the step finds"

    def check(self, ctx):
        return Plan.change("look at the input")

    def apply(self, ctx, plan):
        raise UsageError("--target: no such target here; name one that exists")


class FailManyLines(Step):
    id = "fail_many_lines"
    title = "Fail with a message of several lines"

    def check(self, ctx):
        return Plan.change("connect as app\nthen read the catalog")

    def apply(self, ctx, plan):
        raise StepFailed('could not connect as app\nDETAIL: role "app" does not exist\nHINT: create the role first')


@runbook("test.refuse", steps=[RefuseInStep], summary="Refuse inside a step (tests only)")
def refuse(ctx):
    """No parameters."""


@runbook("test.multiline", steps=[FailManyLines], summary="Fail with a many-line error (tests only)")
def multiline(ctx):
    """No parameters."""
