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


RENDERERS = {"doctor": render_doctor}
