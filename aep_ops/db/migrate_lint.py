"""Lint the migration SQL: our own required rules, and squawk's when it is installed.

Our rules (``error`` findings stop a run before anything changes; ``note`` findings inform):
- ``create-index-not-concurrently`` (error): CREATE INDEX on a table that exists before the
  migration takes a SHARE lock that blocks every writer for the whole build.
- ``concurrently-in-transaction`` (error): CONCURRENTLY inside BEGIN ... COMMIT fails in
  PostgreSQL, and a tool that wraps migrations in transactions must be told not to.
- ``lock-timeout-not-set`` (note): aep-ops sets lock_timeout on the session, but the SQL
  itself does not; run by hand it would wait forever and queue every writer behind it.
squawk (pip package squawk-cli) adds its rules as ``warning`` findings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from aep_ops.base.log import get_logger
from aep_ops.db.migrate_sql import Migration, strip_comments

log = get_logger(__name__)

_CREATE_INDEX = re.compile(r"^\s*create\s+(?:unique\s+)?index\s+(concurrently\s+)?(?:if\s+not\s+exists\s+)?"
                           r"(?:[\w\".]+\s+)?on\s+(?:only\s+)?([\w\".]+)", re.I | re.S)
_CREATE_TABLE = re.compile(r"^\s*create\s+(?:unlogged\s+|temp\s+|temporary\s+)?table\s+(?:if\s+not\s+exists\s+)?"
                           r"([\w\".]+)", re.I | re.S)
_BEGIN = re.compile(r"^\s*(begin|start\s+transaction)\b", re.I)
_END = re.compile(r"^\s*(commit|end|rollback)\b", re.I)
_LOCK_TIMEOUT = re.compile(r"\block_timeout\b", re.I)
SQUAWK_SKIPPED = ("require-lock-timeout", "require-statement-timeout")  # our session sets both
SQUAWK_TIMEOUT = 60


@dataclass(frozen=True)
class Finding:
    migration: str
    rule: str
    level: str  # error | warning | note
    message: str
    source: str = "aep-ops"

    def line(self) -> str:
        return f"{self.level} {self.migration}: {self.rule}: {self.message}" + (
            f" [{self.source}]" if self.source != "aep-ops" else "")


def lint(migrations: list[Migration]) -> tuple[list[Finding], bool]:
    """(findings, whether squawk ran)."""
    findings = own_rules(migrations)
    squawk = squawk_path()
    if squawk is None:
        return findings, False
    if not migrations:
        return findings, True
    return findings + squawk_findings(squawk, migrations), True


def own_rules(migrations: list[Migration]) -> list[Finding]:
    created: set[str] = set()
    out = []
    for m in migrations:
        in_transaction = False
        for stmt in m.statements:
            text = strip_comments(stmt).strip()
            if _BEGIN.match(text):
                in_transaction = True
            elif _END.match(text):
                in_transaction = False
            if table := _CREATE_TABLE.match(text):
                created.add(_bare(table.group(1)))
            index = _CREATE_INDEX.match(text)
            if index and not index.group(1) and _bare(index.group(2)) not in created:
                out.append(Finding(m.name, "create-index-not-concurrently", "error",
                                   f"CREATE INDEX on existing table {_bare(index.group(2))} blocks writes for the whole"
                                   " build: use CREATE INDEX CONCURRENTLY, in a migration of its own"))
            if in_transaction and re.search(r"\bconcurrently\b", text, re.I):
                out.append(Finding(m.name, "concurrently-in-transaction", "error",
                                   "CONCURRENTLY cannot run inside a transaction block: move it out of BEGIN/COMMIT"
                                   " (node-pg-migrate: pgm.noTransaction())"))
        if not _LOCK_TIMEOUT.search(strip_comments(m.sql)):
            out.append(Finding(m.name, "lock-timeout-not-set", "note",
                               "the SQL sets no lock_timeout (aep-ops sets it for its session; run by hand, this"
                               " migration could wait forever and queue writers behind it)"))
    return out


def squawk_path() -> str | None:
    beside = Path(sys.executable).parent / "squawk"  # the venv's, when aep-ops runs from one
    return str(beside) if os.access(beside, os.X_OK) else shutil.which("squawk")


def squawk_findings(squawk: str, migrations: list[Migration]) -> list[Finding]:
    """squawk's findings on each migration (a failure to run squawk is logged, never fatal)."""
    with tempfile.TemporaryDirectory(prefix="aep-squawk-") as tmp:
        paths = {}
        for number, m in enumerate(migrations):
            path = Path(tmp) / f"{number:04d}.sql"
            path.write_text(m.sql)
            paths[str(path)] = m.name
        argv = [squawk, "--reporter", "json", "--pg-version", "15", "--exclude", ",".join(SQUAWK_SKIPPED),
                "--", *paths]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=SQUAWK_TIMEOUT)
            found = json.loads(proc.stdout or "[]")
        except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
            log.warning("migrate.squawk_failed", error=str(exc))
            return [Finding("*", "squawk-failed", "note", f"squawk could not lint: {exc}", "squawk")]
    return [Finding(paths.get(f.get("file"), f.get("file") or "?"), f.get("rule_name") or "?", "warning",
                    f"line {int(f.get('line') or 0) + 1}: {f.get('message')}", "squawk") for f in found]


def as_records(findings: list[Finding]) -> list[dict]:
    return [asdict(f) for f in findings]


def _bare(name: str) -> str:
    return name.replace('"', "").split(".")[-1].lower()
