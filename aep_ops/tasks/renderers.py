"""Runbook-specific text output (the default lists each step's outcome)."""

from __future__ import annotations

import sys
from typing import Any

from aep_ops.tasks.adapter import render_result
from aep_ops.base.textfmt import STEP_LINE_WIDTH, duration, lines, one_line


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
    """The drill's verdict first: one line per check, then RTO and RPO each beside its own objective,
    in human units; last, a kept scratch copy's DSN and the command that removes it. A check's error
    shows its first line here, uncut (it is said once, here), the rest is in the report."""
    report = result.summary
    if result.status == "planned" or "checks" not in report:
        render_result(result, settings)
        return
    out = sys.stdout
    width = STEP_LINE_WIDTH if getattr(out, "isatty", lambda: False)() else None
    print(f"dr.drill on {result.env}, run {result.run_id}: {report['result'].upper()}", file=out)
    print(f"  restored backup {report['backup_label']} + WAL to {report['target_time']}", file=out)
    for check in report["checks"]:
        head = f"  {check['status']:<7} {check['id']:<20} "
        if check["status"] == "failed":
            found = lines(check["detail"]) or [""]
            more = len(found) - 1
            detail = found[0].strip() + (f" (+{more} line{'' if more == 1 else 's'} in the report)" if more else "")
        else:
            detail = one_line(check["detail"], limit=None if width is None else max(width - len(head), 20))
        print(head + detail, file=out)
    print(f"  RTO {duration(report['rto_seconds'])} (objective {duration(report['rto_objective_seconds'])}),"
          f" RPO {duration(report['rpo_seconds'])} (objective {duration(report['rpo_objective_seconds'])}),"
          f" archive lag at start {duration(report['archive_lag_seconds'])}", file=out)
    print(f"  report: {report['report']}", file=out)
    print(f"  metrics: {report['metrics_file']}", file=out)
    if report.get("trend_chart"):
        print(f"  trend chart: {report['trend_chart']} (and .svg; redrawn in the background)", file=out)
    for reaped in report.get("reaped_leftovers") or []:
        print(f"  reaped leftover scratch copy: {reaped}", file=out)
    kept = report.get("kept")
    if kept:
        print(f"  kept {kept['name']} {kept['reason']}", file=out)
        print(f"  dsn: {kept['dsn']}", file=out)
        print(f"  remove it with: {kept['discard_command']}", file=out)


def render_certs_check(result: Any, settings: Any) -> None:
    from aep_ops.certs.render import render_check

    render_check(result, settings)


def render_incident_diagnose(result: Any, settings: Any) -> None:
    from aep_ops.incident.render import render_diagnose

    render_diagnose(result, settings)


def _logs(name: str) -> Any:
    def render(result: Any, settings: Any) -> None:
        from aep_ops.logs import report

        getattr(report, name)(result, settings)

    return render


RENDERERS = {"doctor": render_doctor, "dr.drill": render_drill, "certs.check": render_certs_check,
             "logs.rotate": _logs("render_rotate"), "logs.ship": _logs("render_ship"),
             "logs.retention": _logs("render_retention"), "incident.diagnose": render_incident_diagnose}
