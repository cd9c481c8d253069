"""Runbook-specific text output (the default lists each step's outcome)."""

from __future__ import annotations

import sys
from typing import Any

from aep_ops.tasks.adapter import render_result


def render_doctor(result: Any, settings: Any) -> None:
    """A table: one row per item checked, with the fix for each problem."""
    out = sys.stdout
    rows = []
    for step in result.steps:
        for row in (result.outputs.get(step.step_id) or {}).get("rows", []):
            rows.append((step.step_id, row))
    if result.status == "planned" or not rows:
        render_result(result, settings)
        return
    width = max(len(r["item"]) for _, r in rows)
    print(f"doctor on {result.env}:", file=out)
    for step_id, row in rows:
        mark = "ok  " if row["ok"] else "FAIL"
        line = f"  {mark} {row['item']:<{width}}  {row['detail']}"
        print(line + (f"\n       fix: {row['fix']}" if not row["ok"] and row["fix"] else ""), file=out)
    problems = sum(1 for _, r in rows if not r["ok"])
    print(f"{problems} problem(s)" if problems else "all checks passed", file=out)


def render_drill(result: Any, settings: Any) -> None:
    """The drill's verdict first: each check, then RTO and RPO against the objectives."""
    report = result.summary
    if result.status == "planned" or "checks" not in report:
        render_result(result, settings)
        return
    out = sys.stdout

    def secs(value: Any) -> str:
        return "n/a" if value is None else f"{value:.1f}s"

    print(f"dr.drill on {result.env}, run {result.run_id}: {report['result'].upper()}", file=out)
    print(f"  restored backup {report['backup_label']} + WAL to {report['target_time']}", file=out)
    for check in report["checks"]:
        print(f"  {check['status']:<7} {check['id']:<20} {check['detail']}", file=out)
    print(f"  RTO {secs(report['rto_seconds'])} (objective {secs(report['rto_objective_seconds'])}),"
          f" RPO {secs(report['rpo_seconds'])}, archive lag at start {secs(report['archive_lag_seconds'])}"
          f" (objective {secs(report['rpo_objective_seconds'])})", file=out)
    print(f"  report: {report['report']}", file=out)
    print(f"  metrics: {report['metrics_file']}", file=out)
    for reaped in report.get("reaped_leftovers") or []:
        print(f"  reaped leftover scratch copy: {reaped}", file=out)


RENDERERS = {"doctor": render_doctor, "dr.drill": render_drill}
