"""Applying migrations safely: session timeouts, bounded jittered retries on lock timeout, and
the queue watcher; for SQL files on our own connection, for a tool through PGOPTIONS.

A lock timeout (SQLSTATE 55P03) means another session holds a lock the migration needs; the
migration gave up after ``lock_timeout_ms``, so writers queued behind it waited at most that
long. It is retried after a random pause up to base * 2^attempt (full jitter), at most
``retries`` times, then the run fails saying who held the lock.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from aep_ops.base.errors import StepFailed
from aep_ops.base.log import get_logger
from aep_ops.db import migrate_facts as facts, migrate_sql
from aep_ops.db.migrate_config import MigrateConfig
from aep_ops.db.migrate_watch import QueueWatcher

log = get_logger(__name__)
MAX_BACKOFF_SECONDS = 30.0
LOCK_TIMEOUT_TEXT = ("55P03", "lock timeout")


class LockTimeout(Exception):
    """One attempt hit lock_timeout; retried."""


@dataclass
class Outcome:
    """What applying did, for the journal and the report."""

    applied: list[str] = field(default_factory=list)
    attempts: int = 0
    lock_timeouts: int = 0
    waits: list[float] = field(default_factory=list)  # seconds slept before each retry
    locks: set[tuple[str, str]] = field(default_factory=set)
    max_queued_ms: float = 0.0
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        return {"applied": self.applied, "attempts": self.attempts, "lock_timeouts": self.lock_timeouts,
                "retry_waits": [round(w, 3) for w in self.waits], "seconds": round(self.seconds, 3),
                "max_queued_ms": round(self.max_queued_ms), "locks": [f"{m} on {r}" for r, m in sorted(self.locks)]}


def backoff(attempt: int, base_ms: int, rand: Callable[[float, float], float] = random.uniform) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): full jitter, capped."""
    return rand(0.0, min(MAX_BACKOFF_SECONDS, base_ms / 1000 * 2 ** (attempt - 1)))


def with_lock_retries(attempt_once: Callable[[QueueWatcher], list[str]], cfg: MigrateConfig, conn_params: Any,
                      tag: str, note: Callable[[str], None]) -> Outcome:
    """Run ``attempt_once`` under a watcher until it succeeds, retrying lock timeouts."""
    outcome = Outcome()
    started = time.monotonic()
    try:
        for attempt in range(1, cfg.retries + 2):
            outcome.attempts = attempt
            with QueueWatcher(conn_params, tag, cfg.max_queue_ms) as watcher:
                try:
                    outcome.applied += attempt_once(watcher)
                    return outcome
                except LockTimeout as exc:
                    outcome.lock_timeouts += 1
                    if attempt > cfg.retries:
                        raise StepFailed(
                            f"gave up after {attempt} attempts: each waited lock_timeout {cfg.lock_timeout_ms} ms for"
                            f" a lock ({exc}){watcher.blocker_text()}; so writers queued behind it waited at most"
                            " that long. The migration that timed out was rolled back, earlier ones stay applied"
                            " (the ledger or the tool's table says which): end the blocking session, or run again"
                            " when it is quiet (`--resume RUN_ID`)") from None
                    wait = backoff(attempt, cfg.retry_base_ms)
                    outcome.waits.append(wait)
                    note(f"lock timeout on attempt {attempt}{watcher.blocker_text()}; retry in {wait:.2f} s")
                    log.warning("migrate.lock_timeout", attempt=attempt, wait=round(wait, 3))
                finally:
                    outcome.locks |= watcher.locks
                    outcome.max_queued_ms = max(outcome.max_queued_ms, watcher.max_queued_ms)
            time.sleep(wait)
        raise AssertionError("unreachable")
    finally:
        outcome.seconds = time.monotonic() - started


def session_settings(cfg: MigrateConfig, server_version: int) -> dict[str, str]:
    """lock_timeout, statement_timeout, and (PostgreSQL 14+, unknown before: it would refuse the
    connection) a client check so that a killed aep-ops does not leave its migration running."""
    out = {"lock_timeout": f"{cfg.lock_timeout_ms}ms", "statement_timeout": f"{cfg.statement_timeout_s}s"}
    if server_version >= 140000:
        out["client_connection_check_interval"] = "1s"
    return out


# --- SQL files on our own connection ------------------------------------------------------


def apply_files(conn: Any, migrations: list[migrate_sql.Migration], cfg: MigrateConfig, run_id: str | None,
                watcher: QueueWatcher, progress: Callable[[str], None], *, down: bool = False) -> list[str]:
    """Apply (or revert) ``migrations`` in order; the ledger changes in the same transaction."""
    import psycopg
    from psycopg import errors as pgerr

    done = []
    for m in migrations:
        progress(f"{'reverting' if down else 'applying'} {m.name}")
        try:
            if m.transactional:
                with conn.transaction():
                    for stmt in m.statements:
                        conn.execute(stmt)
                    _ledger(conn, cfg, m, run_id, down)
                    watcher.locks |= facts.own_relation_locks(conn)  # exact: all it took, still held
            else:
                for stmt in m.statements:
                    conn.execute(stmt)
                _ledger(conn, cfg, m, run_id, down)
        except pgerr.LockNotAvailable as exc:
            raise LockTimeout(f"{m.name}: {_first_line(exc)}") from exc
        except pgerr.QueryCanceled as exc:
            raise StepFailed(_cancelled(m.name, exc, watcher, cfg)) from exc
        except psycopg.Error as exc:
            raise StepFailed(f"{m.name} failed: {_first_line(exc)} [{exc.sqlstate}]; it was"
                             f" {'rolled back' if m.transactional else 'NOT in a transaction: check what it left'}"
                             ) from exc
        done.append(m.name)
        log.info("migrate.applied", migration=m.name, down=down)
    return done


def _ledger(conn: Any, cfg: MigrateConfig, m: migrate_sql.Migration, run_id: str | None, down: bool) -> None:
    if down:
        migrate_sql.forget(conn, cfg.ledger_table, m.name)
    else:
        migrate_sql.record(conn, cfg.ledger_table, m, run_id)


def _cancelled(name: str, exc: Exception, watcher: QueueWatcher, cfg: MigrateConfig) -> str:
    if watcher.cancelled:
        return f"{name}: {watcher.cancel_reason()}; the migration was rolled back"
    return f"{name}: cancelled by statement_timeout ({cfg.statement_timeout_s} s) or an operator: {_first_line(exc)}"


# --- a migration tool (node-pg-migrate or any command) --------------------------------------


def command_env(conninfo: dict[str, Any], cfg: MigrateConfig, tag: str, server_version: int = 0) -> dict[str, str]:
    """libpq variables for the tool: PGOPTIONS carries the session settings, PGAPPNAME the tag
    the watcher finds its sessions by; the password only in PGPASSWORD (never in argv)."""
    names = {"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
             "password": "PGPASSWORD", "sslmode": "PGSSLMODE"}
    env = {var: str(conninfo[key]) for key, var in names.items() if conninfo.get(key) is not None}
    env["PGOPTIONS"] = " ".join(f"-c {k}={v}" for k, v in session_settings(cfg, server_version).items())
    env["PGAPPNAME"] = tag
    env["DATABASE_URL"] = database_url(conninfo, tag)  # replaces any DATABASE_URL of the caller's shell
    return env


def database_url(conninfo: dict[str, Any], tag: str) -> str:
    """``postgresql://user@host:port/db?application_name=...`` without the password (node-pg and
    node-pg-migrate read DATABASE_URL first; a socket directory as host is percent-encoded)."""
    from urllib.parse import quote, urlencode

    user = quote(str(conninfo.get("user") or ""), safe="")
    host = quote(str(conninfo.get("host") or "localhost"), safe="")
    port = f":{conninfo['port']}" if conninfo.get("port") else ""
    query = {"application_name": tag, **({"sslmode": conninfo["sslmode"]} if conninfo.get("sslmode") else {})}
    return (f"postgresql://{user + '@' if user else ''}{host}{port}/{quote(str(conninfo.get('dbname') or ''), safe='')}"
            f"?{urlencode(query)}")


def run_command(argv: list[str], env: dict[str, str], cfg: MigrateConfig, watcher: QueueWatcher) -> str:
    """Run the tool once; LockTimeout when its output shows SQLSTATE 55P03, StepFailed otherwise."""
    from aep_ops.executors.local import LocalExecutor

    result = LocalExecutor().run(argv, env=env, timeout=cfg.command_timeout_s)
    output = (result.stdout + "\n" + result.stderr).strip()
    if result.ok:
        return output
    tail = " | ".join(output.splitlines()[-3:])[:400]
    if watcher.cancelled:
        raise StepFailed(f"`{argv[0]}`: {watcher.cancel_reason()}; it exited {result.exit_status}: {tail}")
    if any(text.lower() in output.lower() for text in LOCK_TIMEOUT_TEXT):
        raise LockTimeout(f"`{argv[0]}` exited {result.exit_status}: {tail}")
    raise StepFailed(f"`{' '.join(argv)}` exited {result.exit_status}: {tail}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
