"""Runbooks that try to leak secrets everywhere aep-ops writes, loaded as a plugin (AEP_OPS_PLUGINS).

Each resolves the canary secrets the environment's configuration names (``CANARY_REFS``: one per
reference kind, plus the Vault token) and then hands their values to every writer a real step can
reach: the plan summary, outputs (nested, and as a key), the run summary, log events, a stdlib
logger, progress lines, journal notes, the DR report and metrics writer, the rollout state file,
an error message, an unexpected exception (whose ``str`` is the value's ``repr``), and an
exception raised outside any step (the front door's internal-error path).

- ``canary.leak`` succeeds; ``canary.fail`` fails with the values in a many-line error;
  ``canary.crash`` dies of a KeyError in a step; ``canary.internal`` raises in the runbook
  function itself, before any step.
"""

from __future__ import annotations

import dataclasses
import logging

from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import StepFailed
from aep_ops.base.log import get_logger

log = get_logger(__name__)

# Where the test's configuration puts each canary reference (dotted, under the environment),
# and the Vault token, which is a secret too (global ``vault.token``).
CANARY_REFS = {
    "env": "database.password",
    "file": "backup.s3.key",
    "aws-sm": "backup.s3.key_secret",
    "vault": "backup.s3.cipher_pass",
}


def resolve_all(ctx) -> dict[str, str]:
    """Kind -> resolved value of every canary (the Vault token is resolved with the vault one)."""
    values = {}
    for kind, dotted in CANARY_REFS.items():
        node = ctx.env
        for part in dotted.split("."):
            node = node[part]
        values[kind] = ctx.secret(node)
    values["vault-token"] = ctx.secret(ctx.settings.get("vault.token"))
    return values


class ResolveAll(Step):
    id = "resolve_all"
    title = "Resolve every canary secret and use it"

    def check(self, ctx):
        values = resolve_all(ctx)
        # A long plan: a terminal line cuts it, possibly in the middle of a secret.
        return Plan.change("log in with " + " and ".join(values.values()))

    def apply(self, ctx, plan):
        values = resolve_all(ctx)
        joined = " ".join(values.values())
        log.info("canary.use", values=list(values.values()), by_kind=values, keyed={v: k for k, v in values.items()})
        logging.getLogger("paramiko.transport").warning("auth with %s", joined)
        logging.getLogger("botocore.auth").error("signing with %r", values)  # a repr, as %r writes it
        ctx.progress(f"using {joined}")
        ctx.note(f"logged in with {joined}")
        ctx.summary["dsn"] = f"postgresql://app:{values['env']}@db/aep"
        return {"dsn": f"postgresql://app:{values['env']}@db/aep", "values": list(values.values()),
                "by_kind": values, "keyed": {v: k for k, v in values.items()}, "repr": repr(values)}


class WriteEvidence(Step):
    id = "write_evidence"
    title = "Write a DR report, metrics and a rollout state holding the secrets"

    def check(self, ctx):
        return Plan.change("write the report, the metrics and the rollout state")

    def apply(self, ctx, plan):
        from aep_ops.dr import report as drill_report
        from aep_ops.patch import state as rollout

        values = resolve_all(ctx)
        joined = " ".join(values.values())
        restored = {"source": f"postgresql://app:{values['env']}@db", "name": repr(values)}
        fake = dataclasses.replace(ctx, soft_failures={"check_markers": f"marker missing, logged in with {joined}"},
                                   outputs={"ensure_scratch_restored": restored})
        paths = drill_report.write(ctx.settings, drill_report.build(fake, kept={
            "name": "scratch", "dsn": f"postgresql://app:{values['file']}@db", "reason": "for the test",
            "discard_command": f"inv pitr.discard --password {values['vault']}"}))
        path = rollout.state_path(ctx.state_dir, ctx.env_name, ctx.run_id)
        state = rollout.RolloutState.create(path, run_id=ctx.run_id, env=ctx.env_name,
                                            hosts=[{"name": "web-1", "address": "127.0.0.1"}], canary=["web-1"],
                                            batches=[["web-1"]], up_to_date=[])
        state.fail("web-1", "drain", f"login refused for {joined}")
        return {"report": str(paths["json"]), "rollout_state": str(path)}


class FailWithSecrets(Step):
    id = "fail_with_secrets"
    title = "Fail with every secret in a many-line message"

    def check(self, ctx):
        return Plan.change("fail")

    def apply(self, ctx, plan):
        values = resolve_all(ctx)
        raise StepFailed(f"could not log in with {values['env']}\n"
                         + "\n".join(f"DETAIL: {kind} said {value}" for kind, value in values.items()))


class CrashWithSecret(Step):
    id = "crash_with_secret"
    title = "Crash on an unexpected exception holding a secret"

    def check(self, ctx):
        return Plan.change("crash")

    def apply(self, ctx, plan):
        values = resolve_all(ctx)
        raise KeyError(f"no role for password {' '.join(values.values())}")  # str() of a KeyError is a repr


@runbook("canary.leak", steps=[ResolveAll, WriteEvidence], summary="Carry secrets to every writer (tests only)")
def leak(ctx):
    """No parameters."""


@runbook("canary.fail", steps=[ResolveAll, FailWithSecrets], summary="Fail with secrets in the error (tests only)")
def fail(ctx):
    """No parameters."""


@runbook("canary.crash", steps=[CrashWithSecret], summary="Crash with a secret in a KeyError (tests only)")
def crash(ctx):
    """No parameters."""


@runbook("canary.internal", steps=[ResolveAll], summary="Raise outside any step (tests only)")
def internal(ctx):
    """The runbook function runs before any step: what it raises reaches the front door as an internal error."""
    values = resolve_all(ctx)
    raise LookupError({"password": values["env"], "all": list(values.values())})  # str() is the dict's repr
