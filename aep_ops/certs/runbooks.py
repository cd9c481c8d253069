"""The certificate runbooks.

- ``certs.check``: every TLS endpoint and ACM certificate of an environment, or ad-hoc
  endpoints. Read-only: no lock, nothing changed but its own metrics file; each endpoint is looked
  at over fresh connections (aep_ops.certs.probe) and assessed (aep_ops.certs.findings); any
  critical finding ends the run with exit 5.
- ``certs.renew``: the due ones through ACME, stored as new versions, then deployed
  (aep_ops.certs.steps_renew, then the deploy steps).
- ``certs.deploy``: the current versions onto nginx hosts and ACM (aep_ops.certs.steps_deploy).

Heavy imports stay inside functions: the CLI imports this module to list tasks.
"""

from __future__ import annotations

import time

from aep_ops.certs.steps_deploy import EnsureAcmDeployed, EnsureNginxDeployed
from aep_ops.certs.steps_renew import EnsureIssued, RenewalDue
from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import VerificationFailed


def _verdict(rows: list[dict], what: str) -> Plan:
    """Unchanged when nothing is critical (warnings included); else a soft failure naming each."""
    critical = [r for r in rows if r["status"] == "critical"]
    warnings = sum(1 for r in rows if r["status"] == "warning")
    ok = len(rows) - len(critical) - warnings
    counts = f"{len(rows)} {what}: {ok} ok, {warnings} warning, {len(critical)} critical"
    if critical:
        raise VerificationFailed(counts + ": " + "; ".join(
            f"{_name(r)}: " + ", ".join(p["message"] for p in r["problems"] if p["severity"] == "critical")
            for r in critical), details={"rows": rows})
    return Plan.unchanged(counts, rows=rows)


def _name(row: dict) -> str:
    if "label" not in row:
        return f"ACM {row['certificate']}"
    return row["label"] + (f" ({row['host']})" if row.get("host") else "")


class TlsEndpoints(Step):
    id = "tls_endpoints"
    title = "Check the certificate every endpoint serves"
    soft = True

    def check(self, ctx):
        from aep_ops.certs.check import check_endpoints
        from aep_ops.certs.endpoints import configured_endpoints
        from aep_ops.certs.settings import certificates, certs_settings, thresholds

        endpoints = ctx.params["endpoint_list"]
        if endpoints is None:
            endpoints = configured_endpoints(ctx.settings, certificates(ctx.settings))
        if not endpoints:
            return Plan.unchanged(f"no TLS endpoints configured for {ctx.env_name} (certificates: in the"
                                  " configuration, or --endpoints HOST[:PORT][@SNI],...)", rows=[])
        values = certs_settings(ctx.settings)
        ctx.progress(f"probing {len(endpoints)} endpoint(s), {values['parallel']} at a time,"
                     f" {values['timeout']} s each at most")
        rows = check_endpoints(endpoints, ca_file=ctx.params["trust_file"], thresholds=thresholds(ctx.settings),
                               parallel=int(values["parallel"]), timeout=float(values["timeout"]),
                               progress=ctx.progress)
        ctx.summary["endpoints"] = rows
        return _verdict(rows, "endpoint(s)")


class AcmCertificates(Step):
    id = "acm_certificates"
    title = "Check the ACM certificates (status, expiry, in use by)"
    soft = True

    def check(self, ctx):
        from datetime import datetime, timezone

        from aep_ops.certs.acm import acm_rows
        from aep_ops.certs.settings import certificates, thresholds

        if ctx.params["endpoint_list"] is not None:
            ctx.summary["acm"] = []
            return Plan.unchanged("ad-hoc endpoints only (--endpoints): ACM not read", rows=[])
        rows = acm_rows(ctx.settings, certificates(ctx.settings), thresholds(ctx.settings), datetime.now(timezone.utc))
        ctx.summary["acm"] = rows
        if not rows:
            return Plan.unchanged("no ACM certificates configured", rows=[])
        return _verdict(rows, "ACM certificate(s)")


class ExpiryMetrics(Step):
    id = "expiry_metrics"
    title = "Write the expiry metrics for Prometheus"

    def check(self, ctx):
        from aep_ops.certs import metrics
        from aep_ops.certs.settings import metrics_path

        endpoint_rows = (ctx.outputs.get("tls_endpoints") or {}).get("rows") or []
        acm_rows = (ctx.outputs.get("acm_certificates") or {}).get("rows") or []
        path = metrics_path(ctx.settings)
        metrics.write(path, metrics.render(ctx.env_name, endpoint_rows, acm_rows, time.time()))
        ctx.summary["metrics_file"] = str(path)
        return Plan.unchanged(f"wrote {path}", metrics_file=str(path))


@runbook("certs.check", steps=[TlsEndpoints, AcmCertificates, ExpiryMetrics],
         summary="Check every TLS endpoint and ACM certificate: expiry, names, chain, key, protocols (exit 5 if"
                 " any is critical)",
         read_only=True,
         help={"endpoints": "check these instead of the configuration: HOST[:PORT][@SNI],...",
               "ca_file": "verify chains against this PEM file instead of the system trust store"})
def check(ctx: RunContext, *, endpoints: str | None = None, ca_file: str | None = None) -> None:
    """Parse the flags before any connection: a mistake is exit 2 with nothing probed."""
    from aep_ops.certs.check import trust_for
    from aep_ops.certs.endpoints import endpoints_flag
    from aep_ops.certs.settings import certificates, certs_settings, thresholds
    from aep_ops.base.errors import refuse_blank

    refuse_blank("--ca-file", ca_file, "give a PEM file of the CA certificates to trust, or leave it out")
    ctx.params["endpoint_list"] = endpoints_flag(endpoints)
    trust_file = ca_file or certs_settings(ctx.settings).get("ca_file")
    trust_for(trust_file)  # a CA file that cannot be used is refused now, not per endpoint
    ctx.params["trust_file"] = trust_file
    thresholds(ctx.settings)
    certificates(ctx.settings)


@runbook("certs.renew", steps=[RenewalDue, EnsureIssued, EnsureNginxDeployed, EnsureAcmDeployed],
         summary="Renew the certificates that are due through ACME, store them versioned, deploy them",
         help={"name": "only this certificate (default: every one of the environment)",
               "force": "renew even when not due", "dry_run": "order from acme.staging_directory, store nothing"})
def renew(ctx: RunContext, *, name: str | None = None, force: bool = False) -> None:
    """Which certificates, and a CA configuration that may be used, before anything is asked of it."""
    from aep_ops.certs.renewal import acme_settings, check_renewable, selected

    ctx.params["certificates"] = selected(ctx.settings, name)
    for cert in ctx.params["certificates"]:
        check_renewable(ctx.settings, cert)
    if ctx.params["certificates"]:
        acme_settings(ctx.settings, staging=ctx.dry_run)


@runbook("certs.deploy", steps=[EnsureNginxDeployed, EnsureAcmDeployed],
         summary="Deploy the current certificate versions to nginx hosts (rolling, verified, rolled back on"
                 " failure) and ACM",
         help={"name": "only this certificate (default: every one of the environment)"})
def deploy(ctx: RunContext, *, name: str | None = None) -> None:
    """A named certificate must have a stored version: there is nothing to deploy before certs.renew."""
    from aep_ops.certs import store
    from aep_ops.certs.renewal import selected
    from aep_ops.base.errors import UsageError

    ctx.params["certificates"] = selected(ctx.settings, name)
    if name is not None and store.current(ctx.settings, name.strip()) is None:
        raise UsageError(f"certificate {name.strip()} has no issued version yet: run certs.renew --name"
                         f" {name.strip()} --env {ctx.env_name} first")
