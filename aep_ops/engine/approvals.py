"""Second-person approvals of runs that change production, kept in the journal's database.

A front door that cannot take ``--yes`` (chat) records a request: the run waits in the journal
as "awaiting approval" and a row here binds the request to (run, environment, hash of the
runbook's arguments). Another person approves it (once: the update only takes a pending row),
and the run that carries it out consumes the approval (once) with the hash of the arguments it
was actually given: an approval never covers other arguments, another run or a second run.
Every transition is one conditional UPDATE, so two replicas sharing a PostgreSQL journal cannot
both approve, or both execute, one request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aep_ops.base.errors import ApprovalRequired
from aep_ops.base.timefmt import iso_ms, utc_now

PENDING, APPROVED, DENIED, EXPIRED, EXECUTED = "pending", "approved", "denied", "expired", "executed"

TABLE = """CREATE TABLE IF NOT EXISTS run_approvals (
    run_id TEXT PRIMARY KEY, runbook TEXT NOT NULL, env TEXT NOT NULL, args_hash TEXT NOT NULL,
    requested_by TEXT NOT NULL, requested_at TEXT NOT NULL, expires_at TEXT NOT NULL,
    state TEXT NOT NULL, decided_by TEXT, decided_at TEXT, via TEXT)"""


@dataclass(frozen=True)
class Approval:
    run_id: str
    runbook: str
    env: str
    args_hash: str
    requested_by: str
    requested_at: str
    expires_at: str
    state: str
    decided_by: str | None
    decided_at: str | None
    via: str | None

    def expired(self) -> bool:
        return iso_ms(utc_now()) >= self.expires_at


def args_hash(runbook: str, env: str, params: dict[str, Any]) -> str:
    """What an approval is bound to besides the run: the runbook, environment and arguments."""
    text = json.dumps({"runbook": runbook, "env": env, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class Approvals:
    """The approvals table, on the journal's own connection (SQLite or the shared PostgreSQL)."""

    def __init__(self, journal: Any) -> None:
        self._db = journal.lock_backend()
        self._db.execute(TABLE)

    def request(self, run_id: str, runbook: str, env: str, params: dict[str, Any], *, requested_by: str,
                ttl_seconds: int, via: str) -> Approval:
        now = utc_now()
        self._db.execute(
            "INSERT INTO run_approvals (run_id, runbook, env, args_hash, requested_by, requested_at, expires_at,"
            " state, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, runbook, env, args_hash(runbook, env, params), requested_by, iso_ms(now),
             iso_ms(now + timedelta(seconds=ttl_seconds)), PENDING, via))
        return self.get(run_id)  # type: ignore[return-value]

    def get(self, run_id: str) -> Approval | None:
        rows = self._db.query("SELECT * FROM run_approvals WHERE run_id = ?", (run_id,))
        return Approval(**rows[0]) if rows else None

    def approve(self, run_id: str, approver: str, expected_hash: str | None = None) -> Approval:
        """Approve a pending, unexpired request of someone else; raise ApprovalRequired saying why not
        (already decided, expired, one's own, or the arguments differ from what the approver saw)."""
        return self._decide(run_id, approver, APPROVED, expected_hash)

    def deny(self, run_id: str, by: str) -> Approval:
        return self._decide(run_id, by, DENIED, None)

    def _decide(self, run_id: str, who: str, state: str, expected_hash: str | None) -> Approval:
        now = iso_ms(utc_now())
        sql = ("UPDATE run_approvals SET state = ?, decided_by = ?, decided_at = ?"
               " WHERE run_id = ? AND state = ? AND expires_at > ?")
        args: tuple = (state, who, now, run_id, PENDING, now)
        if state == APPROVED:
            sql += " AND requested_by <> ?"
            args += (who,)
            if expected_hash is not None:
                sql += " AND args_hash = ?"
                args += (expected_hash,)
        if self._db.query(sql + " RETURNING run_id", args):
            return self.get(run_id)  # type: ignore[return-value]
        raise ApprovalRequired(self._why_not(run_id, who, state, expected_hash))

    def _why_not(self, run_id: str, who: str, state: str, expected_hash: str | None) -> str:
        found = self.get(run_id)
        if found is None:
            return f"no approval request for run {run_id}"
        if found.state != PENDING:
            by = f" by {found.decided_by} at {found.decided_at}" if found.decided_by else ""
            return f"run {run_id} is already {found.state}{by}; nothing to do"
        if found.expired():
            return f"the request for run {run_id} expired at {found.expires_at}; ask again"
        if state == APPROVED and found.requested_by == who:
            return f"run {run_id} was requested by {who}: a second person must approve it"
        if expected_hash is not None and expected_hash != found.args_hash:
            return f"the arguments of run {run_id} are not the ones shown for approval; ask again"
        return f"run {run_id} could not be decided (state {found.state})"

    def consume(self, run_id: str, runbook: str, env: str, params: dict[str, Any]) -> Approval:
        """The run carrying out an approved request takes its approval, once, and only with the
        arguments that were approved. Returns the approval (``decided_by`` is the approver)."""
        wanted = args_hash(runbook, env, params)
        if self._db.query("UPDATE run_approvals SET state = ? WHERE run_id = ? AND state = ? AND args_hash = ?"
                          " RETURNING run_id", (EXECUTED, run_id, APPROVED, wanted)):
            return self.get(run_id)  # type: ignore[return-value]
        found = self.get(run_id)
        if found is not None and found.state == APPROVED:
            raise ApprovalRequired(f"run {run_id}: these arguments are not the approved ones"
                                   f" ({runbook} on {env}); a change of arguments needs a new approval")
        if found is not None and found.state == PENDING:
            raise ApprovalRequired(f"run {run_id} has not been approved yet")
        raise ApprovalRequired(self._why_not(run_id, "", EXECUTED, None))

    def expire_due(self) -> list[Approval]:
        """Pending requests past their time, marked expired; each is returned to one caller only."""
        now = iso_ms(utc_now())
        rows = self._db.query("UPDATE run_approvals SET state = ?, decided_at = ? WHERE state = ? AND expires_at <= ?"
                              " RETURNING run_id", (EXPIRED, now, PENDING, now))
        return [a for a in (self.get(r["run_id"]) for r in rows) if a is not None]
