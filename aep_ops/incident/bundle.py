"""The diagnosis on disk: ``summary.md`` for people, ``diagnosis.json`` for tools, ``raw/`` with
every source's raw output, and one ``.tar.gz`` of it all to attach to the incident. Everything
passes through ``scrub`` first; the directory is written under a temporary name and renamed
when complete, so a bundle that exists is whole."""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

from aep_ops.incident.model import Finding, SourceResult
from aep_ops.incident.scrub import scrub, scrub_obj

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def write_bundle(parent: Path, name: str, report: dict[str, Any], sources: list[SourceResult],
                 findings: list[Finding]) -> dict[str, str]:
    """Write ``parent/name/`` and ``parent/name.tar.gz``; returns their paths."""
    parent.mkdir(parents=True, exist_ok=True)
    final, partial = parent / name, parent / f".{name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "raw").mkdir(parents=True)
    document = scrub_obj({**report, "findings": [f.to_json() for f in findings],
                          "sources": [s.to_json() for s in sources]})
    _write(partial / "diagnosis.json", json.dumps(document, indent=2, default=str) + "\n")
    _write(partial / "summary.md", scrub(markdown(document)))
    for source in sources:
        folder = partial / "raw" / safe_name(source.name)
        for raw_name, text in source.raw.items():
            folder.mkdir(parents=True, exist_ok=True)
            _write(folder / safe_name(raw_name), scrub(text))
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    archive = parent / f"{name}.tar.gz"
    temporary = parent / f".{name}.tar.gz.partial"
    with tarfile.open(temporary, "w:gz") as tar:
        tar.add(final, arcname=name)
    os.replace(temporary, archive)
    return {"directory": str(final), "summary": str(final / "summary.md"), "json": str(final / "diagnosis.json"),
            "archive": str(archive)}


def safe_name(name: str) -> str:
    """A file name from a source's name (``host:web-1`` -> ``host_web-1``), never a path."""
    cleaned = _UNSAFE.sub("_", name).strip("._") or "source"
    return cleaned[:120]


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def markdown(doc: dict[str, Any]) -> str:
    """The human report: the verdict, what to run, then where every fact came from."""
    counts = doc.get("counts", {})
    lines = [f"# Incident diagnosis: {doc.get('env')}", "",
             f"- run: `{doc.get('run_id')}`, at {doc.get('started_at')}, window: the last {doc.get('since')}",
             f"- findings: {counts.get('critical', 0)} critical, {counts.get('warning', 0)} warning,"
             f" {counts.get('info', 0)} info",
             "- sources: " + ", ".join(f"{n} {s}" for s, n in sorted(doc.get("source_counts", {}).items())), ""]
    lines += ["## Findings", ""]
    if not doc["findings"]:
        lines.append("Nothing above its threshold.")
    else:
        lines += ["| severity | where | what | threshold | run |", "|---|---|---|---|---|"]
        for f in doc["findings"]:
            run = f"`{f['command']}`" if f.get("command") else (f["runbook"] or "")
            lines.append(f"| {f['severity']} | {_cell(f['source'])} {_cell(f.get('where') or '')} | {_cell(f['what'])}"
                         f" | {_cell(f['threshold'])} | {_cell(run)} |")
    lines += ["", "## Sources", "", "| source | status | seconds | error |", "|---|---|---|---|"]
    for s in doc["sources"]:
        lines.append(f"| {_cell(s['name'])} | {s['status']} | {s['elapsed']:.2f} | {_cell(s.get('error') or '')} |")
    hosts = [s for s in doc["sources"] if s["name"].startswith("host:") and s["data"].get("memory") is not None]
    if hosts:
        lines += ["", "## Hosts", "", "| host | load | CPU % | memory % | fullest volume | failed units |",
                  "|---|---|---|---|---|---|"]
        for s in hosts:
            d = s["data"]
            disk = max(d.get("disks") or [], key=lambda r: r["used_percent"], default=None)
            lines.append(f"| {_cell(d['host'])} | {' '.join(map(str, d.get('load') or []))} | {d.get('cpu_percent')}"
                         f" | {d['memory']['used_percent']} | "
                         + (f"{disk['mount']} {disk['used_percent']}%" if disk else "") + " | "
                         + _cell(", ".join(d.get("failed_units") or []) if d.get("failed_units") is not None
                                 else "unknown") + " |")
    lines += ["", "Raw outputs of every source are under `raw/` (secrets masked).", ""]
    return "\n".join(lines)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
