"""The steps of ``incident.diagnose``: collect every source at once (each within the deadline),
rank what they found, and write the bundle. Read-only: nothing here changes a host, the
database or AWS; every finding names the runbook that would."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aep_ops.base.errors import AepError, UsageError
from aep_ops.engine.step import Plan, Step
from aep_ops.incident.model import CRITICAL, ERROR, OK, SEVERITIES, SKIPPED, TIMEOUT, Finding, SourceResult, rank
from aep_ops.incident.settings import IncidentConfig


class PostgresSource:
    name = "postgres"

    def __init__(self, settings: Any, cfg: IncidentConfig, *, since_seconds: float) -> None:
        self.settings, self.cfg, self.since_seconds = settings, cfg, since_seconds

    def collect(self, deadline_at: float) -> SourceResult:
        from aep_ops.incident.source_postgres import PostgresThresholds, collect_postgres

        try:
            params = _database_params(self.settings)
        except AepError as exc:
            return SourceResult(self.name, ERROR, error=str(exc))
        return collect_postgres(params, deadline=max(0.5, deadline_at - time.monotonic()),
                                thresholds=PostgresThresholds.from_settings(self.settings),
                                env_name=self.cfg.env_name, since_seconds=self.since_seconds)

    def abort(self) -> None:
        """collect_postgres cancels its own query at its deadline."""


def _database_params(settings: Any) -> dict[str, Any]:
    """``incident.dsn`` when set (a pg_monitor role), else the primary as the backend reaches it."""
    from aep_ops.db.primary import primary_params

    return primary_params(settings, dsn=(settings.env.get("incident") or {}).get("dsn"),
                          dsn_key=f"environments.{settings.env_name}.incident.dsn")


def build_sources(ctx: Any, cfg: IncidentConfig) -> tuple[list[Any], list[str]]:
    """Every source of the environment, and notes on what is left out (no hosts, no AWS)."""
    from aep_ops.incident.source_app import HealthSource, TlsSource
    from aep_ops.incident.source_aws import AwsSource
    from aep_ops.incident.source_hosts import HostSource

    since = ctx.params["since_seconds"]
    hosts, notes = _hosts(ctx, cfg), []
    if not hosts:
        notes.append("no hosts in the inventory: host checks left out")
    sources: list[Any] = [HostSource(ctx.settings, h, cfg, since_seconds=since) for h in hosts]
    urls = [(u, None, None) for u in cfg.health_endpoints] or [(h.health_url, h.role, h.name) for h in hosts
                                                                if h.health_url]
    sources += [PostgresSource(ctx.settings, cfg, since_seconds=since), HealthSource(cfg, urls),
                TlsSource(ctx.settings), AwsSource(ctx.settings, cfg, since_seconds=since, hosts=hosts)]
    return sources, notes


def _hosts(ctx: Any, cfg: IncidentConfig) -> list[Any]:
    from aep_ops.fleet.inventory import hosts_for

    role = ctx.params["role"]
    if role is not None:  # asked for: an unknown role is the user's mistake (exit 2)
        return hosts_for(ctx.settings, role=role)
    if not ctx.settings.env.get("hosts") and (ctx.settings.env.get("inventory") or {}).get("source") != "ec2":
        return []
    if cfg.roles:
        return [h for r in cfg.roles for h in hosts_for(ctx.settings, role=r)]
    return hosts_for(ctx.settings)


class CollectSources(Step):
    id = "collect_sources"
    title = "Collect from every source at once, each within its deadline"

    def check(self, ctx):
        from aep_ops.incident.collect import collect_all

        cfg: IncidentConfig = ctx.params["config"]
        sources, notes = build_sources(ctx, cfg)
        for note in notes:
            ctx.progress(note)
        ctx.progress(f"collecting from {len(sources)} source(s), {cfg.deadline:g} s each at most")
        started = time.monotonic()
        results = collect_all(sources, deadline=cfg.deadline, parallel=cfg.parallel,
                              progress=lambda r: ctx.progress(f"{r.name}: {r.status} in {r.elapsed:.2f} s"))
        ctx.params["collected"] = results  # in memory for the next steps (not a parameter: never journaled)
        ctx.params["collected_seconds"] = time.monotonic() - started
        rows = [{"name": r.name, "status": r.status, "elapsed": round(r.elapsed, 3), "error": r.error}
                for r in results]
        missing = [r["name"] for r in rows if r["status"] not in (OK, SKIPPED)]
        return Plan.unchanged(f"{len(rows)} source(s) in {ctx.params['collected_seconds']:.1f} s"
                              + (f"; incomplete: {', '.join(missing)}" if missing else ""), sources=rows, notes=notes)


class RankFindings(Step):
    id = "rank_findings"
    title = "Rank the findings by severity"

    def check(self, ctx):
        results: list[SourceResult] = ctx.params["collected"]
        findings = rank([f for r in results for f in r.findings] + silent_sources(results, ctx.params["config"]))
        ctx.params["findings"] = findings
        counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITIES}
        ctx.params["counts"] = counts
        return Plan.unchanged(", ".join(f"{n} {s}" for s, n in counts.items()),
                              top=[f.what for f in findings if f.severity == CRITICAL][:10], **counts)


def silent_sources(results: list[SourceResult], cfg: IncidentConfig) -> list[Finding]:
    """A source that timed out or failed without saying why in a finding of its own is one:
    missing data is never silent."""
    out = []
    for r in results:
        if r.status in (TIMEOUT, ERROR) and not any(f.source == r.name for f in r.findings):
            what = "did not answer in time" if r.status == TIMEOUT else "failed"
            out.append(Finding(CRITICAL, r.name, f"{what}: {r.error or 'no answer'}",
                               f"an answer within {cfg.deadline:g} s (incident.deadline_seconds)", where=r.name))
    return out


class WriteBundle(Step):
    id = "write_bundle"
    title = "Write the report (Markdown, JSON) and the archive of raw outputs"

    def check(self, ctx):
        from aep_ops.base.timefmt import utc_now
        from aep_ops.incident.bundle import write_bundle
        from aep_ops.incident.scrub import scrub_obj

        results: list[SourceResult] = ctx.params["collected"]
        findings: list[Finding] = ctx.params["findings"]
        now = utc_now()
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        parent = Path(ctx.params["bundle"]) if ctx.params["bundle"] else ctx.state_dir / "reports" / "incidents"
        report = {"env": ctx.env_name, "run_id": ctx.run_id, "started_at": now.isoformat(timespec="seconds"),
                  "since": ctx.params["since"], "counts": ctx.params["counts"],
                  "source_counts": _status_counts(results),
                  "collect_seconds": round(ctx.params["collected_seconds"], 3)}
        paths = write_bundle(parent, f"incident-{ctx.env_name}-{stamp}", report, results, findings)
        ctx.summary.update(scrub_obj({**report, "findings": [f.to_json() for f in findings],
                                      "sources": [{"name": r.name, "status": r.status, "elapsed": round(r.elapsed, 3),
                                                   "error": r.error} for r in results],
                                      "bundle": paths}))
        return Plan.unchanged(f"report {paths['summary']}, archive {paths['archive']}", report=paths["summary"],
                              json=paths["json"], archive=paths["archive"], directory=paths["directory"])


def _status_counts(results: list[SourceResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def check_bundle_dir(value: str | None) -> str | None:
    """``--bundle DIR``: a directory (made if missing), never a file; checked before collecting."""
    if value is None:
        return None
    if not str(value).strip():
        raise UsageError("--bundle is empty: name a directory, or leave the flag out for the state directory")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--bundle {value}: exists and is not a directory")
    probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("/"))
    import os

    if not os.access(probe, os.W_OK):
        raise UsageError(f"--bundle {value}: {probe} is not writable")
    return str(path.resolve())
