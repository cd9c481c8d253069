"""The application as its users meet it: each health URL probed several times (status and
latency), and the certificate each TLS endpoint serves (certs.check's probe and assessment,
reused), each within the diagnosis's deadline."""

from __future__ import annotations

import statistics
import time
from typing import Any

from aep_ops.incident.model import CRITICAL, OK, PARTIAL, SKIPPED, WARNING, Finding, SourceResult
from aep_ops.incident.settings import IncidentConfig

PROBE_TIMEOUT = 5.0


class HealthSource:
    name = "app"

    def __init__(self, cfg: IncidentConfig, urls: list[tuple[str, str | None, str | None]]) -> None:
        self.cfg, self.urls = cfg, urls  # (url, role and name of the host that serves it)

    def collect(self, deadline_at: float) -> SourceResult:
        from aep_ops.executors.fleet import map_bounded

        if not self.urls:
            return SourceResult(self.name, SKIPPED, error="no health URL (incident.health_endpoints, or health_url"
                                                          " of the hosts)")
        answers = map_bounded(lambda item: self._probe(item[0], deadline_at), self.urls,
                              parallel=min(len(self.urls), self.cfg.parallel),
                              timeout=max(0.1, deadline_at - time.monotonic()))
        rows, findings = [], []
        for (url, role, host), answer in zip(self.urls, answers):
            probes = answer.value if answer.ok else []
            row = _summarise(url, probes, answer.why() if not answer.ok else "") | {"host": host}
            rows.append(row)
            findings.extend(self._findings(row, role))
        status = OK if all(a.ok for a in answers) else PARTIAL
        raw = "\n".join(f"{r['url']} " + " ".join(f"{p['status']}/{p['ms']}ms" for p in r["probes"]) for r in rows)
        return SourceResult(self.name, status, data={"endpoints": rows}, raw={"health.txt": raw + "\n"},
                            findings=findings)

    def abort(self) -> None:
        """Each GET ends by its own timeout (at most PROBE_TIMEOUT)."""

    def _probe(self, url: str, deadline_at: float) -> list[dict[str, Any]]:
        from aep_ops.patch.host import health_probe

        probes = []
        for _ in range(self.cfg.health_probes):
            left = deadline_at - time.monotonic()
            if left <= 0.05:
                break
            started = time.monotonic()
            ok, what = health_probe(url, min(PROBE_TIMEOUT, left))
            probes.append({"ok": ok, "status": what, "ms": round((time.monotonic() - started) * 1000, 1)})
        return probes

    def _findings(self, row: dict[str, Any], role: str | None) -> list[Finding]:
        env = self.cfg.env_name
        restart = f"inv service.restart --env {env} --role {role}" if role else ""
        failed = [p for p in row["probes"] if not p["ok"]]
        if row["error"] or not row["probes"]:
            return [Finding(CRITICAL, self.name, f"{row['url']}: no answer ({row['error'] or 'no probe finished'})",
                            "every health probe answers 200", "service.restart" if role else "", restart,
                            where=row["host"] or row["url"])]
        if failed:
            return [Finding(CRITICAL, self.name, f"{row['url']}: {len(failed)} of {len(row['probes'])} health"
                            f" probes failed (last: {failed[-1]['status']})", "every health probe answers 200",
                            "service.restart" if role else "", restart, where=row["host"] or row["url"])]
        if row["median_ms"] is not None and row["median_ms"] > self.cfg.latency_ms:
            return [Finding(WARNING, self.name, f"{row['url']}: health answers take {row['median_ms']:.0f} ms"
                            " (median)", f"median > {self.cfg.latency_ms} ms (incident.app.latency_ms)",
                            where=row["host"] or row["url"])]
        return []


def _summarise(url: str, probes: list[dict[str, Any]], error: str) -> dict[str, Any]:
    times = [p["ms"] for p in probes if p["ok"]]
    return {"url": url, "probes": probes, "error": error or None,
            "ok": sum(1 for p in probes if p["ok"]), "failed": sum(1 for p in probes if not p["ok"]),
            "median_ms": round(statistics.median(times), 1) if times else None,
            "max_ms": max(times) if times else None}


class TlsSource:
    """certs.check's probe of every configured endpoint: days left, chain, protocol."""

    name = "tls"

    def __init__(self, settings: Any) -> None:
        from aep_ops.certs.endpoints import configured_endpoints
        from aep_ops.certs.settings import certificates, certs_settings, thresholds

        self.endpoints = configured_endpoints(settings, certificates(settings))
        self.values = certs_settings(settings)
        self.thresholds = thresholds(settings)
        self.env_name = settings.env_name

    def collect(self, deadline_at: float) -> SourceResult:
        from aep_ops.certs.check import check_endpoints

        if not self.endpoints:
            return SourceResult(self.name, SKIPPED, error="no TLS endpoints configured (certificates:)")
        timeout = max(0.1, min(float(self.values["timeout"]), deadline_at - time.monotonic() - 1.0))
        rows = check_endpoints(self.endpoints, ca_file=self.values.get("ca_file"), thresholds=self.thresholds,
                               parallel=int(self.values["parallel"]), timeout=timeout)
        findings = []
        for row in rows:
            for problem in row.get("problems", []):
                if problem["severity"] not in (CRITICAL, WARNING):
                    continue
                renew = problem["code"] in ("expired", "expires_soon", "not_yet_valid")
                findings.append(Finding(
                    problem["severity"], self.name, f"{row['label']}: {problem['message']}",
                    f"certs.warn_days {self.thresholds.warn_days}, certs.critical_days {self.thresholds.critical_days}"
                    if renew else f"certs.check: {problem['code']}", "certs.renew" if renew else "certs.check",
                    f"inv certs.renew --env {self.env_name}" if renew else f"inv certs.check --env {self.env_name}",
                    where=row["label"], details={"days_left": row.get("days_left")}))
        raw = "\n".join(f"{r['label']}: {r['status']} days_left={r.get('days_left')}" for r in rows) + "\n"
        return SourceResult(self.name, OK, data={"endpoints": [_tls_row(r) for r in rows]}, raw={"tls.txt": raw},
                            findings=findings)

    def abort(self) -> None:
        """Each handshake ends by its own timeout."""


def _tls_row(row: dict[str, Any]) -> dict[str, Any]:
    keep = ("label", "host", "port", "status", "days_left", "not_after", "protocol", "chain_verified")
    return {k: row.get(k) for k in keep} | {"problems": [p["message"] for p in row.get("problems", [])]}
