"""Evidence of a drill: the report (Markdown + JSON), Prometheus metrics, and the history chart.

Metrics are written atomically in the text exposition format so that node_exporter's
textfile collector (or any scraper) can alert on a failed or missed drill:
``aep_ops_dr_last_success_timestamp_seconds`` keeps its value across failed drills.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aep_ops.redact import redact, redact_obj

CHECK_STEPS = ("check_markers", "check_row_counts", "check_amcheck", "check_smoke_queries", "check_writable",
               "measure")
PHASES = {"source": ("ensure_source_cluster", "ensure_app_database", "ensure_stanza"), "preflight": ("preflight",),
          "backup": ("ensure_recent_backup",), "sentinels": ("run_sentinels",),
          "restore": ("ensure_scratch_restored",), "verify": CHECK_STEPS[:-1]}


def reports_dir(settings: Any) -> Path:
    return settings.state_dir / "reports"


METRICS_NAME = "aep_ops_dr_{env}.prom"


def metrics_path(settings: Any) -> Path:
    """One file per environment, so a staging drill never rewrites production's series.

    ``drill.metrics_file`` is a template when it holds ``{env}`` (``/var/lib/node_exporter/aep_ops_dr_{env}.prom``),
    a directory when it ends with ``/`` or is one (the file ``aep_ops_dr_ENV.prom`` goes in it); any other
    value is taken as this environment's own file. Default: STATE_DIR/metrics/aep_ops_dr_ENV.prom.
    """
    env = settings.env_name
    configured = str((settings.env.get("drill") or {}).get("metrics_file") or "")
    if not configured:
        return settings.state_dir / "metrics" / METRICS_NAME.format(env=env)
    if "{env}" in configured:
        return Path(configured.replace("{env}", env))
    if configured.endswith("/") or Path(configured).is_dir():
        return Path(configured) / METRICS_NAME.format(env=env)
    return Path(configured)


def build(ctx: Any) -> dict[str, Any]:
    restored = ctx.outputs.get("ensure_scratch_restored", {})
    measured = ctx.outputs.get("measure", {})
    checks = []
    for step_id in CHECK_STEPS:
        failed = ctx.soft_failures.get(step_id)
        details = ctx.outputs.get(step_id, {})
        status = "failed" if failed else ("skipped" if details.get("skipped") else "passed")
        checks.append({"id": step_id, "status": status, "detail": failed or _detail(details)})
    phases = {name: round(sum(ctx.timings.get(s, 0.0) for s in steps), 3) for name, steps in PHASES.items()}
    phases["recovery (restore + replay + promote)"] = restored.get("restore_seconds", 0) + restored.get(
        "recovery_seconds", 0)
    return redact_obj({
        "runbook": "dr.drill", "run_id": ctx.run_id, "env": ctx.env_name,
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "result": "failed" if ctx.soft_failures else "passed",
        "source": restored.get("source"), "backup_label": restored.get("backup_label"),
        "backup_stop": restored.get("backup_stop"), "target_time": restored.get("target_time"),
        "restored_name": restored.get("name"), "restored_port": restored.get("port"),
        "timeline": restored.get("timeline"), "last_replayed_commit": restored.get("last_replayed_commit"),
        "recovery_stop": restored.get("recovery_stop"),
        "rto_seconds": measured.get("rto_seconds"), "rpo_seconds": measured.get("rpo_seconds"),
        "archive_lag_seconds": measured.get("archive_lag_seconds",
                                            ctx.outputs.get("preflight", {}).get("archive_lag_seconds")),
        "rto_objective_seconds": measured.get("rto_objective_seconds"),
        "rpo_objective_seconds": measured.get("rpo_objective_seconds"),
        "checks": checks, "phases_seconds": phases, "reaped_leftovers": restored.get("reaped_leftovers", []),
    })


def _detail(details: dict[str, Any]) -> str:
    if details.get("summary"):
        return str(details["summary"])
    return ", ".join(f"{k}={v}" for k, v in details.items() if k not in ("skipped",) and not isinstance(v, (dict, list)))


def write(settings: Any, report: dict[str, Any]) -> dict[str, Path]:
    directory = reports_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"dr-drill-{report['run_id']}"
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "metrics": metrics_path(settings)}
    _atomic(paths["json"], json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    _atomic(paths["md"], markdown(report))
    _atomic(paths["metrics"], metrics(report, previous=_read_metrics(paths["metrics"], report["env"])))
    return paths


def markdown(r: dict[str, Any]) -> str:
    def secs(value: Any) -> str:
        return "n/a" if value is None else f"{value:.1f} s"

    lines = [f"# DR drill {r['run_id']} on {r['env']}: {r['result'].upper()}", "",
             f"- Finished: {r['finished_at']}",
             f"- Restored: backup `{r['backup_label']}` (ended {r['backup_stop']}) + WAL to target {r['target_time']}",
             f"- Into: `{r['restored_name']}` on port {r['restored_port']}, timeline {r['timeline']}",
             f"- Last replayed commit: {r['last_replayed_commit']} ({r['recovery_stop']})", "",
             "| measure | value | objective |", "|---|---|---|",
             f"| RTO (restore start to verified, writable) | {secs(r['rto_seconds'])} | {secs(r['rto_objective_seconds'])} |",
             f"| RPO (target minus last replayed commit) | {secs(r['rpo_seconds'])} | {secs(r['rpo_objective_seconds'])} |",
             f"| Archive lag at drill start | {secs(r['archive_lag_seconds'])} | {secs(r['rpo_objective_seconds'])} |",
             "", "## Checks", "", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['id']} | {c['status']} | {c['detail']} |" for c in r["checks"]]
    lines += ["", "## Timings per phase", "", "| phase | seconds |", "|---|---|"]
    lines += [f"| {name} | {value:.2f} |" for name, value in r["phases_seconds"].items()]
    return redact("\n".join(lines) + "\n")


def metrics(r: dict[str, Any], previous: dict[str, float]) -> str:
    env = r["env"]
    now = datetime.fromisoformat(r["finished_at"]).timestamp()
    last_success = now if r["result"] == "passed" else previous.get("aep_ops_dr_last_success_timestamp_seconds")
    values = [
        ("aep_ops_dr_last_run_timestamp_seconds", "gauge", "When the last drill finished.", now),
        ("aep_ops_dr_last_success_timestamp_seconds", "gauge", "When the last passing drill finished.", last_success),
        ("aep_ops_dr_result", "gauge", "1 if the last drill passed every check, else 0.",
         1 if r["result"] == "passed" else 0),
        ("aep_ops_dr_rto_seconds", "gauge", "Measured RTO of the last drill.", r["rto_seconds"]),
        ("aep_ops_dr_rpo_seconds", "gauge", "Measured RPO of the last drill.", r["rpo_seconds"]),
        ("aep_ops_dr_archive_lag_seconds", "gauge", "Archive lag at the start of the last drill.",
         r["archive_lag_seconds"]),
    ]
    out = []
    for name, kind, help_text, value in values:
        if value is None:
            continue
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f'{name}{{env="{env}"}} {float(value):.3f}']
    return "\n".join(out) + "\n"


def _read_metrics(path: Path, env: str) -> dict[str, float]:
    """This environment's previous values (a file shared before one file per env may hold others)."""
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r'^(\w+)\{env="([^"]*)"\} (\S+)$', line)
        if match and match.group(2) == env:
            found[match.group(1)] = float(match.group(3))
    return found


def _atomic(path: Path, text: str) -> None:
    """tmp + fsync + rename in the same directory, then fsync the directory: a reader (the
    textfile collector) sees the old file or the new one, never a partial one, even after a crash."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# --- history -----------------------------------------------------------------------------


def history(settings: Any) -> list[dict[str, Any]]:
    reports = []
    for path in sorted(reports_dir(settings).glob("dr-drill-*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except ValueError:
            continue
    return [r for r in reports if r.get("env") == settings.env_name]


def trend_svg(reports: list[dict[str, Any]], path: Path, width: int = 720, height: int = 300) -> Path:
    """An SVG line chart of RTO and RPO per drill (SVG: an image any browser shows, no plotting stack)."""
    pad, series = 50, [("rto_seconds", "#1f77b4", "RTO"), ("rpo_seconds", "#d62728", "RPO")]
    values = [r.get(k) or 0 for r in reports for k, _, _ in series] or [1]
    top = max(max(values), 1e-9) * 1.1
    n = max(len(reports) - 1, 1)

    def xy(i: int, v: float) -> str:
        return f"{pad + i * (width - 2 * pad) / n:.1f},{height - pad - (v / top) * (height - 2 * pad):.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif"'
             f' font-size="12"><rect width="100%" height="100%" fill="white"/>',
             f'<text x="{pad}" y="20">DR drills: RTO and RPO (seconds), {len(reports)} drills</text>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="5" y="{pad + 4}">{top:.1f}</text><text x="5" y="{height - pad}">0</text>']
    for key, colour, label in series:
        points = " ".join(xy(i, r.get(key) or 0) for i, r in enumerate(reports))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts += [f'<circle cx="{xy(i, r.get(key) or 0).split(",")[0]}" cy="{xy(i, r.get(key) or 0).split(",")[1]}"'
                  f' r="3" fill="{"red" if r.get("result") != "passed" else colour}"/>' for i, r in enumerate(reports)]
        parts.append(f'<text x="{width - pad - 60}" y="{20 + 15 * series.index((key, colour, label))}"'
                     f' fill="{colour}">{label}</text>')
    parts.append("</svg>")
    _atomic(path, "\n".join(parts) + "\n")
    return path
