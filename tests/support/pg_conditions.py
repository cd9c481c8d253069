"""Induced PostgreSQL conditions for the incident and db.terminate/db.cancel tests: sessions
holding locks, waiting behind them, idle in a transaction, running long; a server that accepts
TCP and never answers. Everything started here is stopped by ``Sessions.close``."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import psycopg

# A query that ignores cancellation (it catches query_canceled) until ``stop_ignoring`` is set: it
# keeps a cancel's verify waiting, deterministically, until the test lets it go.
STUBBORN_SQL = """
create table if not exists stubborn_ctl (stop boolean not null);
create or replace function stubborn_sleep() returns void language plpgsql as $$
begin
  loop
    begin
      perform pg_sleep(0.05);
    exception when query_canceled then
      if exists (select 1 from stubborn_ctl where stop) then raise; end if;
    end;
  end loop;
end $$;
"""


class Sessions:
    """Client sessions of one test; ``close`` rolls back, ends the waiting threads, disconnects."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conns: list[psycopg.Connection] = []
        self.threads: list[threading.Thread] = []
        self.errors: dict[int, BaseException] = {}

    def open(self, name: str, *, autocommit: bool = True) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, autocommit=autocommit, application_name=name)
        self.conns.append(conn)
        return conn

    def idle_in_transaction(self, name: str, query: str = "select 1") -> psycopg.Connection:
        conn = self.open(name, autocommit=False)
        conn.execute(query)
        return conn

    def in_background(self, conn: psycopg.Connection, query: str) -> threading.Thread:
        """Run ``query`` on ``conn`` in a thread (it blocks); its error, if any, lands in ``errors``."""
        pid = conn.info.backend_pid

        def run() -> None:
            try:
                conn.execute(query)
            except BaseException as exc:  # noqa: BLE001 - reported to the test through errors
                self.errors[pid] = exc

        thread = threading.Thread(target=run, name=f"pg-session-{pid}", daemon=True)
        thread.start()
        self.threads.append(thread)
        return thread

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.cancel_safe(timeout=2)
            except Exception:  # noqa: BLE001 - already gone (terminated by the test)
                pass
        for thread in self.threads:
            thread.join(timeout=10)
        for conn in self.conns:
            try:
                if not conn.closed and not conn.autocommit:
                    conn.rollback()
            except Exception:  # noqa: BLE001
                pass
            conn.close()


def wait_until(predicate, timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(0.02)


def activity(dsn: str, pid: int) -> tuple | None:
    """(state, wait_event_type, backend_start) of ``pid`` in pg_stat_activity, or None."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("select state, wait_event_type, backend_start from pg_stat_activity where pid = %s",
                            (pid,)).fetchone()


def wait_lock_waiting(dsn: str, pid: int, timeout: float = 30) -> None:
    wait_until(lambda: (activity(dsn, pid) or (None, None))[1] == "Lock", timeout, f"pid {pid} waiting for a lock")


def wait_state(dsn: str, pid: int, state: str, timeout: float = 30) -> None:
    wait_until(lambda: (activity(dsn, pid) or (None,))[0] == state, timeout, f"pid {pid} in state {state!r}")


def backend_start(dsn: str, pid: int):
    row = activity(dsn, pid)
    assert row is not None, f"pid {pid} is not in pg_stat_activity"
    return row[2]


def alive(dsn: str, pid: int) -> bool:
    return activity(dsn, pid) is not None


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 whose listener completes handshakes and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@contextmanager
def local_source() -> Iterator[tuple[dict, str]]:
    """The local AEP source set up once through the CLI (db.setup) in a state dir of its own:
    (the environment variables a CLI run needs to reach it, its DSN). For a module-scoped fixture:
    db.terminate/db.cancel only read and end sessions, so the tests of a file can share it."""
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from aep_ops.testing.postgres import free_port, stop_clusters_under
    from tests.conftest import BIN, REPO
    from tests.support.processes import kill_matching

    base = Path(tempfile.mkdtemp(prefix="aep-sessions-test-"))
    base.chmod(0o755)
    port = free_port()
    env = {"AEP_OPS_STATE_DIR": str(base), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT": str(port),
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT": "5",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__SETTINGS__FSYNC": "off"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
    try:
        setup = subprocess.run([str(BIN / "inv"), "db.setup"], cwd=REPO, capture_output=True, text=True,
                               env={**clean, **env, "PYTHONPATH": str(REPO)}, timeout=300)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        yield env, f"host={base}/pg/aep-source/sock port={port} dbname=aep user=postgres"
    finally:
        stop_clusters_under(base)
        kill_matching(f"--config={base}/pgbackrest/")  # async archive-push would recreate its spool dir
        shutil.rmtree(base, ignore_errors=True)


def audit_lines(state_dir, action: str) -> list[dict]:
    """Records of the audit log (STATE_DIR/logs/audit.jsonl) with this action."""
    import json
    from pathlib import Path

    path = Path(state_dir) / "logs" / "audit.jsonl"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["action"] == action]


def steps_by_id(proc) -> dict:
    """A ``--json`` run's steps by their id."""
    import json

    return {s["step_id"]: s for s in json.loads(proc.stdout)["steps"]}
