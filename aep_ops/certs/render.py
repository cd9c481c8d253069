"""``certs.check`` as a person reads it: one line per endpoint and per ACM certificate, the
worst first, each finding under its line; then where the metrics went."""

from __future__ import annotations

import sys
from typing import Any

ORDER = {"critical": 0, "warning": 1, "ok": 2}


def render_check(result: Any, settings: Any) -> None:
    from aep_ops.tasks.adapter import render_result

    summary = result.summary
    if result.status == "planned" or "endpoints" not in summary:
        render_result(result, settings)
        return
    out = sys.stdout
    rows = summary.get("endpoints") or []
    acm = summary.get("acm") or []
    counts = {s: sum(1 for r in rows + acm if r["status"] == s) for s in ORDER}
    print(f"certs.check on {result.env}, run {result.run_id}: {counts['critical']} critical, {counts['warning']}"
          f" warning, {counts['ok']} ok", file=out)
    table = [("STATUS", "ENDPOINT", "HOST", "DAYS LEFT", "NOT AFTER", "KEY", "PROTOCOL", "ISSUER")]
    for row in sorted(rows, key=lambda r: ORDER[r["status"]]):
        table.append((row["status"], row["label"], row.get("host") or "-", _days(row.get("days_left")),
                      (row.get("not_after") or "-")[:10], _key(row), row.get("protocol") or "-",
                      _cut(row.get("issuer") or "-", 40)))
    _print_table(table, out, rows=sorted(rows, key=lambda r: ORDER[r["status"]]))
    for row in sorted(acm, key=lambda r: ORDER[r["status"]]):
        print(f"{row['status']:<8}  ACM {row['certificate']} {row.get('acm_status') or '?'},"
              f" {_days(row.get('days_left'))}"
              f" days left, in use by {len(row.get('in_use_by') or [])}: {row['arn']}", file=out)
        _print_findings(row, out)
    if summary.get("metrics_file"):
        print(f"metrics: {summary['metrics_file']}", file=out)


def _print_table(table: list[tuple], out: Any, rows: list[dict]) -> None:
    from aep_ops.base.textfmt import table_cell

    cells = [[table_cell(c) for c in line] for line in table]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    for index, line in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip(), file=out)
        if index:
            _print_findings(rows[index - 1], out)


def _print_findings(row: dict, out: Any) -> None:
    from aep_ops.base.textfmt import one_line

    for problem in row.get("problems") or []:
        print(f"          {problem['severity']}: {one_line(problem['message'])}", file=out)


def _days(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _key(row: dict) -> str:
    if not row.get("key_type"):
        return "-"
    return f"RSA {row['key_bits']}" if row["key_type"] == "RSA" else row["key_type"]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."
