"""Helpers for the db.migrate tests: a per-test migrations directory, ledger and config on the
module's seeded local source, connections to that source, and a steady writer that measures
the latency of each insert."""

from __future__ import annotations

import os
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import psycopg

from tests.conftest import write_config


def source_dsn(state_dir: Path) -> str:
    port = os.environ["AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT"]
    return f"host={state_dir}/pg/aep-source/sock port={port} dbname=aep user=postgres"


def connect(state_dir: Path, **kw) -> psycopg.Connection:
    return psycopg.connect(source_dsn(state_dir), autocommit=True, **kw)


def sql(state_dir: Path, query: str, params=None) -> list[tuple]:
    with connect(state_dir) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


class Migrations:
    """``up(name, sql)``/``down(name, sql)`` write files; ``config(**migrate)`` writes the
    configuration with this test's own ledger table (tests share one source, not a ledger)."""

    def __init__(self, tmp_path: Path, monkeypatch, name: str) -> None:
        self.tmp_path, self.monkeypatch, self.name = tmp_path, monkeypatch, name
        self.up_dir, self.down_dir = tmp_path / "up", tmp_path / "down"
        self.up_dir.mkdir()
        self.down_dir.mkdir()
        self.ledger = f"ledger_{name}"

    def up(self, name: str, text: str) -> None:
        (self.up_dir / name).write_text(text)

    def down(self, name: str, text: str) -> None:
        (self.down_dir / name).write_text(text)

    def config(self, **migrate) -> None:
        lines = [f"      sql_dir: {self.up_dir}", f"      down_dir: {self.down_dir}",
                 f"      ledger_table: {self.ledger}"]
        for key, value in migrate.items():
            lines.append(f"      {key}: {value!r}" if not isinstance(value, list) else
                         f"      {key}: [{', '.join(_yaml_str(v) for v in value)}]")
        write_config(self.tmp_path / "aep-ops.yaml", "environments:\n  local:\n    migrate:\n" + "\n".join(lines)
                     + "\n", self.monkeypatch)

    def config_command(self, **migrate) -> None:
        """A migration tool instead of the SQL files (same shape as ``config``)."""
        lines = []
        for key, value in migrate.items():
            lines.append(f"      {key}: {value!r}" if not isinstance(value, list) else
                         f"      {key}: [{', '.join(_yaml_str(str(v)) for v in value)}]")
        write_config(self.tmp_path / "aep-ops.yaml", "environments:\n  local:\n    migrate:\n" + "\n".join(lines)
                     + "\n", self.monkeypatch)

    def applied(self, state_dir: Path) -> list[tuple[str, str]]:
        if sql(state_dir, "select to_regclass(%s)", (self.ledger,))[0][0] is None:
            return []
        return sql(state_dir, f"select name, run_id from {self.ledger} order by name")  # test-owned name


def _yaml_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Writer(threading.Thread):
    """Inserts into ``table`` every few milliseconds until stopped; ``latencies`` in seconds."""

    def __init__(self, state_dir: Path, table: str, pause: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.state_dir, self.table, self.pause = state_dir, table, pause
        self.latencies: list[float] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connect(self.state_dir, application_name="test-writer") as conn:
                query = f"insert into {self.table} (v) values (1)"  # test-owned name
                while not self.stop.is_set():
                    t0 = time.perf_counter()
                    conn.execute(query)
                    self.latencies.append(time.perf_counter() - t0)
                    self.stop.wait(self.pause)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self) -> dict[str, float]:
        self.stop.set()
        self.join(30)
        assert self.error is None, self.error
        lat = sorted(self.latencies)
        return {"count": len(lat), "p99_ms": statistics.quantiles(lat, n=100, method="inclusive")[98] * 1000,
                "max_ms": lat[-1] * 1000, "median_ms": statistics.median(lat) * 1000}


def journal_notes(state_dir: Path, run_id: str, step_id: str) -> list[str]:
    with sqlite3.connect(state_dir / "journal.sqlite3") as conn:
        rows = conn.execute("select note from step_events where run_id = ? and step_id = ? and note is not null"
                            " order by rowid", (run_id, step_id)).fetchall()
    return [r[0] for r in rows]
