"""The text a person reads after logs.rotate, logs.ship and logs.retention: the steps, then what
happened in one line per host or file (the whole detail is in ``--json`` and the journal)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any


def render_rotate(result: Any, settings: Any) -> None:
    summary = _steps_only(result, settings, keep=())
    for host in summary.get("hosts") or []:
        print(f"  {host['host']}: {len(host['rotated'])} file(s) rotated", file=sys.stdout)
        for line in host.get("reopened") or []:
            print(f"  {host['host']}: {line.removeprefix('aep-ops: ')}", file=sys.stdout)
    for window in summary.get("copytruncate_loss_windows") or []:
        print(f"  {window['host']}: copytruncate of {window['file']}: the lines written in a window of at most"
              f" {window['window_ms']} ms were lost (create + a reopen signal loses none)", file=sys.stdout)


def render_ship(result: Any, settings: Any) -> None:
    summary = _steps_only(result, settings, keep=("manifest",))
    shipped = summary.get("shipped") or []
    if shipped or "shipped" in summary:
        already = sum(1 for e in shipped if e["outcome"] != "shipped")
        print(f"shipped: {len(shipped) - already} file(s), {sum(e['size'] for e in shipped) / 1e6:.1f} MB,"
              f" {sum(e['lines'] for e in shipped)} lines" + (f"; {already} already in S3, now marked" if already
                                                              else ""), file=sys.stdout)
    for problem in summary.get("failed") or []:
        print(f"  not shipped (kept on its host): {problem}", file=sys.stdout)
    if summary.get("waiting_compression"):
        print(f"waiting for their compression: {summary['waiting_compression']} rotated file(s)", file=sys.stdout)
    if summary.get("aborted_uploads"):
        print(f"aborted abandoned uploads: {len(summary['aborted_uploads'])}", file=sys.stdout)


def render_retention(result: Any, settings: Any) -> None:
    summary = _steps_only(result, settings, keep=())
    for rule in summary.get("lifecycle_rules") or []:
        print(f"  rule {rule.get('ID')}: {_rule_text(rule)}", file=sys.stdout)
    if summary.get("deleted_local"):
        print(f"deleted from the hosts: {len(summary['deleted_local'])} shipped file(s)", file=sys.stdout)


def _steps_only(result: Any, settings: Any, keep: tuple[str, ...]) -> dict[str, Any]:
    from aep_ops.tasks.adapter import render_result

    summary = dict(result.summary or {})
    render_result(dataclasses.replace(result, summary={k: v for k, v in summary.items() if k in keep}), settings)
    return summary


def _rule_text(rule: dict[str, Any]) -> str:
    parts = []
    if "Expiration" in rule:
        exp = rule["Expiration"]
        parts.append(f"expire after {exp['Days']} days" if "Days" in exp else "remove expired delete markers")
    if "NoncurrentVersionExpiration" in rule:
        parts.append(f"noncurrent versions after {rule['NoncurrentVersionExpiration'].get('NoncurrentDays')} days")
    if "AbortIncompleteMultipartUpload" in rule:
        parts.append(f"abort incomplete uploads after"
                     f" {rule['AbortIncompleteMultipartUpload']['DaysAfterInitiation']} day(s)")
    return ", ".join(parts) or "(not aep-ops's)"
