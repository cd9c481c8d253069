"""The deploy steps, shared by ``certs.deploy`` and ``certs.renew`` (which deploys what it renewed).

Each step's check asks the world what it serves now: a host or an ACM certificate already at
the current version's serial is left alone, so a second run changes nothing and a resumed run
goes on with the hosts not done yet."""

from __future__ import annotations

from typing import Any

from aep_ops.engine.context import RunContext
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import AepError, StepFailed, VerificationFailed
from aep_ops.base.log import audit


def _with_versions(ctx: RunContext, key: str) -> list[tuple[dict[str, Any], Any]]:
    """The selected certificates served by ``key`` (nginx or acm), each with its current version."""
    from aep_ops.certs import store

    out = []
    for cert in ctx.params["certificates"]:
        target = cert.get(key) or {}
        if not (target.get("role") if key == "nginx" else target.get("certificate_arn")):
            continue
        version = store.current(ctx.settings, cert["name"])
        if version is not None:
            out.append((cert, version))
    return out


def _nginx_rows(ctx: RunContext) -> list[dict[str, Any]]:
    from aep_ops.certs.deploy_nginx import NginxTarget, serving
    from aep_ops.fleet.inventory import hosts_for

    rows = []
    for cert, version in _with_versions(ctx, "nginx"):
        target = NginxTarget.from_config(cert)
        for host in hosts_for(ctx.settings, role=target.role):
            rows.append({"certificate": cert["name"], "host": host.name, "serving": serving(target, host),
                         "wanted": version.serial})
    return rows


class EnsureNginxDeployed(Step):
    id = "ensure_nginx_deployed"
    title = "Deploy to the nginx hosts, one at a time, each verified over TLS"
    requires_approval = True

    def check(self, ctx):
        rows = _nginx_rows(ctx)
        pending = [r for r in rows if r["serving"] != r["wanted"]]
        if not pending:
            return Plan.unchanged(f"{len(rows)} nginx host(s) serve the current certificates", hosts=rows)
        return Plan.change(f"deploy to {len(pending)} of {len(rows)} nginx host(s): " + ", ".join(
            f"{r['host']} ({r['certificate']} {r['serving'] or 'nothing'} -> {r['wanted']})" for r in pending),
            hosts=rows)

    def apply(self, ctx, plan):
        from aep_ops.certs.deploy_nginx import NginxTarget, deploy_host
        from aep_ops.fleet.inventory import executor_for, hosts_for

        done = []
        for cert, version in _with_versions(ctx, "nginx"):
            target = NginxTarget.from_config(cert)
            for host in hosts_for(ctx.settings, role=target.role):
                args = {"certificate": cert["name"], "serial": version.serial}
                executor = executor_for(ctx.settings, host)
                try:
                    outcome = deploy_host(target, host, executor, version, say=ctx.progress)
                except AepError as exc:
                    audit(ctx.state_dir, "certs.deploy", target=host.name, args=args, result=f"failed: {exc}")
                    raise StepFailed(f"certificate {cert['name']} on {host.name}: {exc}") from exc
                finally:
                    executor.close()
                if outcome == "changed":
                    audit(ctx.state_dir, "certs.deploy", target=host.name, args=args, result="ok")
                    ctx.note(f"{host.name}: serves {cert['name']} {version.serial}")
                done.append({"certificate": cert["name"], "host": host.name, "serial": version.serial,
                             "outcome": outcome})
        return {"hosts": done}

    def verify(self, ctx, outputs):
        wrong = [r for r in _nginx_rows(ctx) if r["serving"] != r["wanted"]]
        if wrong:
            raise VerificationFailed("after the deploy: " + ", ".join(
                f"{r['host']} serves {r['serving'] or 'nothing'}, not {r['wanted']}" for r in wrong))


class EnsureAcmDeployed(Step):
    id = "ensure_acm_deployed"
    title = "Re-import into ACM under the same ARN, verified"
    requires_approval = True

    def check(self, ctx):
        from aep_ops.certs.deploy_acm import acm_plan

        plans = [acm_plan(ctx.settings, cert, version) for cert, version in _with_versions(ctx, "acm")]
        pending = [p for p in plans if p["needed"]]
        if not pending:
            return Plan.unchanged(f"{len(plans)} ACM certificate(s) at the current serials", acm=plans)
        return Plan.change("; ".join(p["summary"] for p in pending), acm=plans)

    def apply(self, ctx, plan):
        """Each import is verified by deploy_to_acm itself (serial, then listeners): no second pass."""
        from aep_ops.certs.deploy_acm import deploy_to_acm

        done = []
        for cert, version in _with_versions(ctx, "acm"):
            done.append(deploy_to_acm(ctx.settings, cert, version))
        return {"acm": done}
