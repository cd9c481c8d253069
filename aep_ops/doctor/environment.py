"""doctor's environment checks: what the environment's runbooks need of its database.

``pitr.restore`` and ``dr.drill`` need the backend's settings, a source that answers and
archives WAL, a backup from the last day (the requirement: automated daily backups) and, on
AWS, credentials that resolve. Each backend has its probes in ``probes_<backend module>.py``
beside this one (``probes_local``, ``probes_rds``), found by the backend's module name as
``aep_ops.db.backends.backend_class`` finds the backend: no step names a backend.

Read-only, like all of doctor: nothing is created, started or written (AWS: STS
GetCallerIdentity and Describe* calls only). A check that cannot run because an earlier one
failed (a missing key, credentials that do not resolve) is a failed row that says which fix
comes first, never a silent pass.
"""

from __future__ import annotations

import importlib
from datetime import timedelta
from types import ModuleType
from typing import Any

from aep_ops.doctor.rows import row, rows_or_fail, split_fix
from aep_ops.engine.context import RunContext
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import AepError, ConfigError, HostUnreachable

DAILY = timedelta(hours=24)  # the requirement: automated daily backups
# doctor answers in seconds, not minutes: few retries, short timeouts (the client factory's
# defaults suit a runbook step that must get through a throttled minute, not a health check)
AWS_OPTIONS = {"max_attempts": 2, "connect_timeout": 3, "read_timeout": 15}


def probes_for(settings: Any) -> ModuleType | None:
    """The probes module of the environment's backend; None for a backend doctor has none for."""
    from aep_ops.db.backends import backend_class

    name = backend_class(settings).__module__.rsplit(".", 1)[-1]
    try:
        return importlib.import_module(f"{__package__}.probes_{name}")
    except ModuleNotFoundError:
        return None


def aws_client(ctx: RunContext, service: str) -> Any:
    from aep_ops.aws import client

    return client(ctx.settings, service, **AWS_OPTIONS)


class AwsCredentials(Step):
    id = "aws_credentials"
    title = "AWS credentials resolve (STS GetCallerIdentity)"
    soft = True

    def check(self, ctx):
        probes = probes_for(ctx.settings)
        if probes is None or not probes.USES_AWS:
            return Plan.unchanged(f"backend {ctx.env.get('backend')} needs no AWS credentials", rows=[])
        return rows_or_fail([identity_row(ctx)], "AWS credentials")


class SourceReady(Step):
    id = "source_ready"
    title = "The database source answers and archives WAL"
    soft = True

    def check(self, ctx):
        return _probe(ctx, "source", "source_rows", "source")


class BackupRecent(Step):
    id = "backup_recent"
    title = "The newest backup is less than 24 h old"
    soft = True

    def check(self, ctx):
        return _probe(ctx, "backups", "backup_rows", "backup")


def _probe(ctx: RunContext, item: str, function: str, what: str) -> Plan:
    probes = probes_for(ctx.settings)
    if probes is None:
        return Plan.unchanged(f"no {what} checks for backend {ctx.env.get('backend')}", rows=[])
    blocked = _blocked(ctx, item)
    if blocked is not None:
        return rows_or_fail([blocked], what)
    try:
        rows = getattr(probes, function)(ctx)
    except AepError as exc:  # a probe's unexpected refusal is a finding, not a crash
        detail, fix = split_fix(str(exc), "fix what the message says, then run doctor again")
        rows = [row(item, False, detail, fix)]
    return rows_or_fail(rows, what)


def _blocked(ctx: RunContext, item: str) -> dict | None:
    """A failed row when an earlier problem keeps this check from running."""
    from aep_ops.db.backends import backend_class

    missing = [key for key, _ in backend_class(ctx.settings).config_problems(ctx.settings)]
    if missing:
        return row(item, False, f"not checked: {', '.join(missing)} not set",
                   "set the key(s) named under config_valid, then run doctor again")
    if "aws_credentials" in ctx.soft_failures:
        return row(item, False, "not checked: the AWS credentials check failed",
                   "fix the aws credentials row first, then run doctor again")
    return None


def identity_row(ctx: RunContext) -> dict:
    """Who aep-ops runs as in AWS, through the one client factory (endpoint override, CA bundle)."""
    from aep_ops.aws.clients import AwsCredentialsError, aws_errors

    aws = ctx.env.get("aws") or {}
    item = "aws credentials"
    try:
        sts = aws_client(ctx, "sts")
        with aws_errors(sts, "asking STS who aep-ops runs as (GetCallerIdentity)"):
            who = sts.get_caller_identity()
    except AwsCredentialsError as exc:
        return row(item, False, _first(exc), "log in (`aws sso login --profile PROFILE`) and set aws.profile for"
                   f" environments.{ctx.env_name}, or provide AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    except HostUnreachable as exc:
        where = aws.get("endpoint_url") or f"STS in {aws.get('region') or 'the default region'}"
        return row(item, False, _first(exc), f"check that {where} answers from this host (network path, proxy,"
                   f" environments.{ctx.env_name}.aws.endpoint_url)")
    except ConfigError as exc:
        return row(item, False, *split_fix(str(exc), f"fix environments.{ctx.env_name}.aws in aep-ops.yaml"))
    except AepError as exc:
        return row(item, False, *split_fix(str(exc), "fix what the message says, then run doctor again"))
    return row(item, True, f"account {who.get('Account')} as {who.get('Arn')}")


def _first(exc: BaseException) -> str:
    """The part of an aep-ops message before its advice (the row's fix says what to do)."""
    return str(exc).split("; ", 1)[0]
