"""Where the migrations come from: a directory of .sql files with a ledger table, or the SQL a
tool's dry run prints (node-pg-migrate ``up --dry-run``).

A file is applied in one transaction together with its ledger row, so it is applied exactly
once even when the run is killed; a file with a CONCURRENTLY statement cannot run in a
transaction, so its statements run one by one and the ledger row follows them (write such
files with IF NOT EXISTS: a retry runs them again).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aep_ops.db.migrate_config import MigrateConfig, table_identifier
from aep_ops.pg.connect import wrap_errors

if TYPE_CHECKING:
    import psycopg

NO_TRANSACTION_MARK = re.compile(r"--\s*aep-ops:\s*no-transaction", re.I)
CONCURRENTLY = re.compile(r"\bconcurrently\b", re.I)
_NPM_HEADER = re.compile(r"^#+\s*MIGRATION\s+(\S+)\s+\((UP|DOWN)\)\s*#+\s*$", re.M)
_NOTHING_TO_RUN = re.compile(r"no migrations to run", re.I)


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)

    @property
    def transactional(self) -> bool:
        return not (NO_TRANSACTION_MARK.search(self.sql) or CONCURRENTLY.search(strip_comments(self.sql)))


def files(directory: Path) -> list[Migration]:
    return [Migration(p.name, p.read_text()) for p in sorted(directory.glob("*.sql")) if p.is_file()]


def applied(conn: psycopg.Connection, ledger: str) -> dict[str, str]:
    """{name: checksum} of the migrations the ledger records; {} before the first run."""
    from psycopg import sql

    with wrap_errors(f"reading the ledger {ledger}", conn):
        if conn.execute("select to_regclass(%s)", (ledger,)).fetchone()[0] is None:
            return {}
        rows = conn.execute(sql.SQL("select name, checksum from {}").format(table_identifier(ledger))).fetchall()
    return dict(rows)


def pending_files(conn: psycopg.Connection, cfg: MigrateConfig) -> tuple[list[Migration], list[str]]:
    """(files not in the ledger, in order; names of applied files changed since they were applied)."""
    done = applied(conn, cfg.ledger_table)
    found = files(cfg.sql_dir)
    changed = [m.name for m in found if m.name in done and done[m.name] != m.checksum]
    return [m for m in found if m.name not in done], changed


def ensure_ledger(conn: psycopg.Connection, ledger: str) -> None:
    from psycopg import sql

    with wrap_errors(f"creating the ledger {ledger}", conn):
        conn.execute(sql.SQL("create table if not exists {} (name text primary key, checksum text not null,"
                             " applied_at timestamptz not null default now(), run_id text)")
                     .format(table_identifier(ledger)))


def record(conn: psycopg.Connection, ledger: str, migration: Migration, run_id: str | None) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("insert into {} (name, checksum, run_id) values (%s, %s, %s)"
                         " on conflict (name) do nothing").format(table_identifier(ledger)),
                 (migration.name, migration.checksum, run_id))


def forget(conn: psycopg.Connection, ledger: str, name: str) -> None:
    from psycopg import sql

    conn.execute(sql.SQL("delete from {} where name = %s").format(table_identifier(ledger)), (name,))


def applied_order(conn: psycopg.Connection, ledger: str) -> list[str]:
    from psycopg import sql

    if conn.execute("select to_regclass(%s)", (ledger,)).fetchone()[0] is None:
        return []
    return [r[0] for r in conn.execute(sql.SQL("select name from {} order by applied_at, name")
                                       .format(table_identifier(ledger))).fetchall()]


def parse_dry_run(output: str) -> list[Migration]:
    """The migrations a tool's dry run would apply: node-pg-migrate's ``### MIGRATION name (UP) ###``
    blocks, else the whole output as one unnamed migration; [] for "No migrations to run!"."""
    if _NOTHING_TO_RUN.search(output) or not strip_comments(output).strip():
        return []
    heads = list(_NPM_HEADER.finditer(output))
    if not heads:
        return [Migration("dry-run output", output)]
    out = []
    for head, nxt in zip(heads, heads[1:] + [None]):
        body = output[head.end(): nxt.start() if nxt else len(output)]
        out.append(Migration(head.group(1), "\n".join(line for line in body.splitlines() if not _chatter(line))))
    return out


def _chatter(line: str) -> bool:
    """node-pg-migrate's own lines around the SQL: ``> Migrating files:``, ``#> WARNING ...``,
    ``Migrations complete!``."""
    text = line.strip()
    return text.startswith((">", "#")) or text in ("Migrations complete!", "dry run")


def strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"--.*$", "", line) for line in text.splitlines())


def split_statements(text: str) -> list[str]:
    """Statements separated by ';' outside quotes, dollar quotes and comments (enough for
    migrations; a statement that fools it fails loudly in PostgreSQL, never silently)."""
    out, buf, i, n = [], [], 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            buf.append(text[i:end])
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            buf.append(text[i:end])
            i = end
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n and (text[end] != ch or text.startswith(ch * 2, end)):
                end += 2 if text.startswith(ch * 2, end) else 1
            buf.append(text[i:end + 1])
            i = end + 1
            continue
        dollar = re.match(r"\$[A-Za-z_]*\$", text[i:])
        if dollar:
            tag = dollar.group(0)
            end = text.find(tag, i + len(tag))
            end = n if end < 0 else end + len(tag)
            buf.append(text[i:end])
            i = end
            continue
        if ch == ";":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    out.append("".join(buf))
    return [s.strip() for s in out if strip_comments(s).strip()]
