"""The terminal summary of ``incident.diagnose``: what is wrong, where, what to run (the most
severe first), then the sources that did not answer fully, then where the bundle is. Everything
else is in the bundle; a person paged at 3 a.m. reads the first lines."""

from __future__ import annotations

import sys
from typing import Any

MARKS = {"critical": "CRIT", "warning": "WARN", "info": "info"}
SHOWN = 20


def render_diagnose(result: Any, settings: Any) -> None:
    from aep_ops.tasks.adapter import render_result

    report = result.summary
    if "findings" not in report:
        render_result(result, settings)
        return
    out = sys.stdout
    counts = report["counts"]
    print(f"incident.diagnose on {result.env} (last {report['since']}): {counts['critical']} critical,"
          f" {counts['warning']} warning, {counts['info']} info; {len(report['sources'])} source(s) in"
          f" {report['collect_seconds']:.1f} s", file=out)
    findings = report["findings"]
    if not findings:
        print("  nothing above its threshold", file=out)
    for finding in findings[:SHOWN]:
        where = f" [{finding['where']}]" if finding.get("where") and finding["where"] not in finding["what"] else ""
        print(f"  {MARKS.get(finding['severity'], finding['severity'])} {finding['source']}{where}: {finding['what']}",
              file=out)
        if finding.get("command"):
            print(f"       run: {finding['command']}", file=out)
    if len(findings) > SHOWN:
        print(f"  ... {len(findings) - SHOWN} more in the report", file=out)
    partial = [s for s in report["sources"] if s["status"] == "partial"]  # timeouts and errors are findings
    for source in partial:
        print(f"  source {source['name']}: {source['status']} after {source['elapsed']:.1f} s"
              + (f" ({source['error']})" if source.get("error") else ""), file=out)
    bundle = report["bundle"]
    print(f"report: {bundle['summary']}", file=out)
    print(f"json:   {bundle['json']}", file=out)
    print(f"archive: {bundle['archive']}", file=out)
