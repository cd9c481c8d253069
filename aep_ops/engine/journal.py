"""The run journal: every run and every step state change, recorded as it happens.

SQLite under the state directory by default; PostgreSQL when ``journal.dsn`` is set, so
several ops hosts share history and locks. Both speak the same SQL (``?`` placeholders are
translated for psycopg). Everything written passes through ``redact`` first.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aep_ops.base.errors import ConfigError, StateUnwritable
from aep_ops.base.redact import dumps, redact

# Run states
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"
RUN_VERIFICATION_FAILED = "verification_failed"
RUN_INTERRUPTED = "interrupted"
RUN_REFUSED = "refused"  # a step refused to go on (bad input: exit 2, approval required: exit 4); resumable
RUN_AWAITING_APPROVAL = "awaiting_approval"  # asked for in chat, waiting for a second person (engine/approvals)
EVENT_NOTE = "note"  # a step_events row that records a note, not a state change of the step

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, runbook TEXT NOT NULL, env TEXT NOT NULL, params TEXT NOT NULL,
        status TEXT NOT NULL, actor TEXT, host TEXT, pid INTEGER, attempts INTEGER NOT NULL,
        started_at TEXT NOT NULL, finished_at TEXT, error TEXT)""",
    "CREATE INDEX IF NOT EXISTS runs_by_runbook ON runs (runbook, env, started_at)",
    """CREATE TABLE IF NOT EXISTS steps (
        run_id TEXT NOT NULL, idx INTEGER NOT NULL, step_id TEXT NOT NULL, title TEXT,
        status TEXT NOT NULL, started_at TEXT, finished_at TEXT, plan TEXT, outputs TEXT,
        error TEXT, PRIMARY KEY (run_id, idx))""",
    """CREATE TABLE IF NOT EXISTS step_events (
        run_id TEXT NOT NULL, idx INTEGER NOT NULL, step_id TEXT NOT NULL, status TEXT NOT NULL,
        at TEXT NOT NULL, note TEXT)""",
    # The configuration overrides (--set, AEP_OPS_*) of each attempt of a run, masked: a table of
    # its own, so that a journal written by an older aep-ops needs no migration.
    """CREATE TABLE IF NOT EXISTS run_overrides (
        run_id TEXT NOT NULL, attempt INTEGER NOT NULL, overrides TEXT NOT NULL, PRIMARY KEY (run_id, attempt))""",
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """Sortable and readable: 20261126T094100Z-3fa2c1."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass(frozen=True)
class RunRecord:
    id: str
    runbook: str
    env: str
    params: dict[str, Any]
    status: str
    actor: str | None
    host: str | None
    pid: int | None
    attempts: int
    started_at: str
    finished_at: str | None
    error: str | None


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    idx: int
    step_id: str
    title: str | None
    status: str
    started_at: str | None
    finished_at: str | None
    plan: str | None
    outputs: dict[str, Any]
    error: str | None


class Journal:
    """Runs and step records. Thread-safe; one connection per journal object."""

    def __init__(self, db: "_Db") -> None:
        self._db = db
        for statement in SCHEMA:
            self._db.execute(statement)

    @classmethod
    def open(cls, settings: Any) -> "Journal":
        dsn_ref = settings.get("journal.dsn")
        if dsn_ref is not None:
            journal = cls(_PostgresDb(settings.secret(dsn_ref)))
        else:
            journal = cls(_SqliteDb(settings.state_dir / "journal.sqlite3"))
        try:
            journal.settle_dead_runs()
        except StateUnwritable:
            pass  # a read-only journal can still be read; a run that needs to write says so itself
        return journal

    @property
    def kind(self) -> str:
        return self._db.kind

    def lock_backend(self) -> Any:
        return self._db

    # --- runs ---

    def _write(self, run_id: str, sql: str, args: tuple) -> None:
        """A write on behalf of a run. When the journal cannot take it (disk full, read-only),
        try once to settle the run as failed, so that it does not stay "running" for ever,
        then raise the one-line StateUnwritable (naming the run to resume)."""
        try:
            self._db.execute(sql, args)
        except StateUnwritable as exc:
            try:
                self._db.execute("UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ? AND status = ?",
                                 (RUN_FAILED, now_iso(), _clean(str(exc)), run_id, RUN_RUNNING))
            except StateUnwritable:
                pass  # settled when the journal is next opened with room (settle_dead_runs)
            raise StateUnwritable(f"{exc}; then resume with --resume {run_id}") from None

    def start_run(self, runbook: str, env: str, params: dict[str, Any], *, actor: str, host: str,
                  run_id: str | None = None, overrides: dict[str, Any] | None = None,
                  status: str = RUN_RUNNING) -> str:
        run_id = run_id or new_run_id()
        try:
            self._db.execute(
            "INSERT INTO runs (id, runbook, env, params, status, actor, host, pid, attempts, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            (run_id, runbook, env, _dump(params), status, actor, host, os.getpid(), now_iso()))
            self._record_overrides(run_id, overrides)
        except StateUnwritable as exc:  # before the first step: nothing was changed (exit 2)
            raise ConfigError(str(exc)) from None
        return run_id

    def claim_run(self, run_id: str, *, host: str, overrides: dict[str, Any] | None = None) -> bool:
        """Start a run that was waiting for approval, in this process; False when it is not waiting
        (already started by another process, or settled)."""
        claimed = self._db.query("UPDATE runs SET status = ?, pid = ?, host = ?, started_at = ? WHERE id = ? AND status = ?"
                                 " RETURNING id", (RUN_RUNNING, os.getpid(), host, now_iso(), run_id,
                                                   RUN_AWAITING_APPROVAL))
        if claimed:  # the overrides recorded with the request were the requesting service's: these ran
            self._write(run_id, "DELETE FROM run_overrides WHERE run_id = ?", (run_id,))
            self._write(run_id, *self._overrides_row(run_id, overrides))
        return bool(claimed)

    def reopen_run(self, run_id: str, *, actor: str, host: str, overrides: dict[str, Any] | None = None) -> None:
        self._write(run_id,
            "UPDATE runs SET status = ?, attempts = attempts + 1, pid = ?, actor = ?, host = ?,"
            " finished_at = NULL, error = NULL WHERE id = ?",
            (RUN_RUNNING, os.getpid(), actor, host, run_id))
        self._write(run_id, *self._overrides_row(run_id, overrides))

    def _record_overrides(self, run_id: str, overrides: dict[str, Any] | None) -> None:
        self._db.execute(*self._overrides_row(run_id, overrides))

    @staticmethod
    def _overrides_row(run_id: str, overrides: dict[str, Any] | None) -> tuple[str, tuple]:
        """The overrides of the attempt the runs row now counts (attempt 1 for a new run)."""
        return ("INSERT INTO run_overrides (run_id, attempt, overrides) SELECT id, attempts, ? FROM runs WHERE id = ?",
                (_dump(overrides or {}), run_id))

    def overrides(self, run_id: str) -> list[dict[str, Any]]:
        """``[{"attempt": 1, "overrides": {key: {"value": ..., "source": ...}}}, ...]``, oldest first."""
        rows = self._db.query("SELECT attempt, overrides FROM run_overrides WHERE run_id = ? ORDER BY attempt",
                              (run_id,))
        return [{"attempt": r["attempt"], "overrides": json.loads(r["overrides"] or "{}")} for r in rows]

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        self._write(run_id, "UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE id = ?",
                         (status, now_iso(), _clean(error), run_id))

    def mark_interrupted(self, run_id: str, note: str) -> None:
        """A run whose process died: its running step is marked failed, the run interrupted."""
        self._db.execute("UPDATE steps SET status = 'failed', error = ?, finished_at = ?"
                         " WHERE run_id = ? AND status = 'running'", (note, now_iso(), run_id))
        self._db.execute("UPDATE runs SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status = ?",
                         (RUN_INTERRUPTED, note, now_iso(), run_id, RUN_RUNNING))

    def settle_dead_runs(self) -> list[str]:
        """Runs recorded as running by a process of this host that no longer exists (killed, or
        it could not write its own end: a full disk) are settled as interrupted, so that
        `runs.list` never shows a dead run as running and `--resume` accepts it."""
        settled = []
        host = socket.gethostname()
        for row in self._db.query("SELECT id, pid FROM runs WHERE status = ? AND host = ?", (RUN_RUNNING, host)):
            if row["pid"] and not _alive(row["pid"]):
                self.mark_interrupted(row["id"], f"its process (pid {row['pid']} on {host}) ended"
                                                 " without recording how the run ended")
                settled.append(row["id"])
        return settled

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self._db.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def list_runs(self, runbook: str | None = None, env: str | None = None, limit: int = 50) -> list[RunRecord]:
        sql, args = "SELECT * FROM runs WHERE 1 = 1", []
        if runbook:
            sql += " AND runbook = ?"
            args.append(runbook)
        if env:
            sql += " AND env = ?"
            args.append(env)
        sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [_run(r) for r in self._db.query(sql, tuple(args))]

    # --- steps ---

    def set_step(self, run_id: str, idx: int, step_id: str, status: str, *, title: str | None = None,
                 plan: str | None = None, outputs: dict | None = None, error: str | None = None,
                 note: str | None = None) -> None:
        at = now_iso()
        existing = self._db.query("SELECT status FROM steps WHERE run_id = ? AND idx = ?", (run_id, idx))
        finished = at if status not in ("pending", "running") else None
        if existing:
            self._write(
                run_id,
                "UPDATE steps SET status = ?, title = COALESCE(?, title), plan = COALESCE(?, plan),"
                " outputs = COALESCE(?, outputs), error = ?, finished_at = ?,"
                " started_at = CASE WHEN ? = 'running' THEN ? ELSE started_at END"
                " WHERE run_id = ? AND idx = ?",
                (status, title, _clean(plan), _dump(outputs) if outputs is not None else None,
                 _clean(error), finished, status, at, run_id, idx))
        else:
            self._write(
                run_id,
                "INSERT INTO steps (run_id, idx, step_id, title, status, started_at, finished_at, plan, outputs, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, idx, step_id, title, status, at if status == "running" else None, finished,
                 _clean(plan), _dump(outputs or {}), _clean(error)))
        self._write(run_id, "INSERT INTO step_events (run_id, idx, step_id, status, at, note) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, idx, step_id, status, at, _clean(note or error)))

    def add_event(self, run_id: str, idx: int, step_id: str, note: str) -> None:
        """A note inside a running step (e.g. one host's transition in a rollout), kept in
        step_events beside the step's own state changes and shown by ``runs.show``."""
        self._write(run_id, "INSERT INTO step_events (run_id, idx, step_id, status, at, note) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, idx, step_id, EVENT_NOTE, now_iso(), _clean(note)))

    def steps(self, run_id: str) -> list[StepRecord]:
        rows = self._db.query("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", (run_id,))
        return [StepRecord(run_id=r["run_id"], idx=r["idx"], step_id=r["step_id"], title=r["title"],
                           status=r["status"], started_at=r["started_at"], finished_at=r["finished_at"],
                           plan=r["plan"], outputs=json.loads(r["outputs"] or "{}"), error=r["error"])
                for r in rows]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return self._db.query("SELECT * FROM step_events WHERE run_id = ? ORDER BY at", (run_id,))

    def close(self) -> None:
        self._db.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def _dump(obj: Any) -> str:
    return dumps(obj, sort_keys=True)


def _clean(text: str | None) -> str | None:
    return None if text is None else redact(str(text))


def _run(row: dict[str, Any]) -> RunRecord:
    return RunRecord(id=row["id"], runbook=row["runbook"], env=row["env"], params=json.loads(row["params"]),
                     status=row["status"], actor=row["actor"], host=row["host"], pid=row["pid"],
                     attempts=row["attempts"], started_at=row["started_at"], finished_at=row["finished_at"],
                     error=row["error"])


class _Db:
    kind = "abstract"

    def execute(self, sql: str, args: tuple = ()) -> None: ...
    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]: ...
    def close(self) -> None: ...


class _SqliteDb(_Db):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            _switch_to_wal(self._conn)
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise unwritable(path, exc) from None

    def execute(self, sql: str, args: tuple = ()) -> None:
        with self._lock:
            try:
                self._conn.execute(sql, args)
            except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
                raise unwritable(self.path, exc) from None

    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                return [dict(r) for r in self._conn.execute(sql, args).fetchall()]
            except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
                raise unwritable(self.path, exc) from None

    def close(self) -> None:
        self._conn.close()


def unwritable(path: Path, exc: BaseException) -> StateUnwritable:
    """The journal's failure as one line: the path, what is wrong, what to do."""
    text = str(exc).lower()
    where = path.parent
    if "readonly" in text or "read-only" in text or isinstance(exc, PermissionError):
        what = "it is read-only"
        todo = f"make {path} and {where} writable by {_me()} or set state_dir to a writable directory"
    elif "full" in text or "disk i/o" in text or getattr(exc, "errno", None) == 28:
        what = f"the disk is full or failing ({_free(where)})"
        todo = f"free space under {where} (`df -h {where}`) or set state_dir to another directory"
    elif "malformed" in text or "not a database" in text:
        what = "the file is damaged (not a readable SQLite database)"
        todo = f"move it aside (mv {path} {path}.damaged) and run again: a new journal is created"
    elif "unable to open" in text:
        what = "it cannot be opened"
        todo = f"check that {where} exists and is writable by {_me()}"
    else:
        what = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        todo = f"check {path}"
    return StateUnwritable(f"cannot use the run journal {path}: {what}; {todo}")


def _me() -> str:
    from aep_ops.base.log import os_user

    return os_user()


def _free(directory: Path) -> str:
    try:
        st = os.statvfs(directory)
    except OSError:
        return "free space unknown"
    return f"{st.f_bavail * st.f_frsize / 2**20:.0f} MiB free"


def _switch_to_wal(conn: sqlite3.Connection, patience: float = 10.0) -> None:
    """``PRAGMA journal_mode=WAL``, retried: when two processes open a new journal at once,
    SQLite answers the second "database is locked" at once instead of waiting its busy
    timeout (seen when two runs start together on a fresh state directory)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class _PostgresDb(_Db):
    """The shared journal. Tables live in schema ``aep_ops``; autocommit, one statement each."""

    kind = "postgres"

    def __init__(self, dsn: str) -> None:
        import psycopg
        from psycopg.rows import dict_row

        from aep_ops.base.errors import ConfigError

        self.dsn = dsn
        self._lock = threading.Lock()
        try:
            self._conn = psycopg.connect(dsn, autocommit=True, row_factory=dict_row, connect_timeout=5)
        except psycopg.Error as exc:
            raise ConfigError(f"journal.dsn: cannot connect to the PostgreSQL journal ({redact(str(exc)).strip()})") from None
        self._conn.execute("CREATE SCHEMA IF NOT EXISTS aep_ops")
        self._conn.execute("SET search_path TO aep_ops")

    def execute(self, sql: str, args: tuple = ()) -> None:
        with self._lock:
            self._conn.execute(sql.replace("?", "%s"), args)

    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._conn.execute(sql.replace("?", "%s"), args).fetchall())

    def close(self) -> None:
        self._conn.close()

