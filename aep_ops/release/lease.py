"""The release lease, kept in the journal's database: who is moving an environment's traffic,
which colour is the stable one to return to, and until when the mover has promised to be alive.

Why a lease and not only the run's lock: a canary that is killed, or hangs on another ops host,
leaves traffic split. The canary renews its lease at every poll; ``release.watchdog`` (a timer)
takes an expired lease away in one conditional UPDATE and returns the traffic; a canary that
wakes up after that finds its lease gone and stops without touching the listener. One row per
environment also remembers the last finished release, so ``release.rollback`` knows where back is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aep_ops.base.timefmt import iso_ms, utc_now

ACTIVE, DONE, ROLLED_BACK = "active", "done", "rolled_back"
COLUMNS = ("env", "run_id", "runbook", "back_to", "released", "holder", "expires_at", "state", "weight", "updated_at",
           "note")

TABLE = """CREATE TABLE IF NOT EXISTS release_leases (
    env TEXT PRIMARY KEY, run_id TEXT NOT NULL, runbook TEXT NOT NULL, back_to TEXT NOT NULL,
    released TEXT NOT NULL, holder TEXT NOT NULL, expires_at TEXT NOT NULL, state TEXT NOT NULL,
    weight INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL, note TEXT)"""


@dataclass(frozen=True)
class Lease:
    env: str
    run_id: str
    runbook: str
    back_to: str  # the colour a rollback returns traffic to (the stable one; after a release, the old one)
    released: str  # the colour being (or last) released
    holder: str
    expires_at: str
    state: str
    weight: int  # the released colour's share the mover last set
    updated_at: str
    note: str | None

    def expired(self) -> bool:
        return self.expires_at <= iso_ms(utc_now())

    @property
    def active(self) -> bool:
        return self.state == ACTIVE


class Leases:
    def __init__(self, journal: Any) -> None:
        self._db = journal.lock_backend()
        self._db.execute(TABLE)

    def get(self, env: str) -> Lease | None:
        rows = self._db.query("SELECT * FROM release_leases WHERE env = ?", (env,))
        return Lease(**rows[0]) if rows else None

    def take(self, env: str, run_id: str, runbook: str, *, back_to: str, released: str, holder: str,
             seconds: int) -> Lease | None:
        """A new run takes the lease unless another run holds it (active): the new lease, or None."""
        moment = utc_now()
        row = (env, run_id, runbook, back_to, released, holder, iso_ms(moment + timedelta(seconds=seconds)), ACTIVE,
               0, iso_ms(moment), None)
        return self.get(env) if self._upsert(row, only_if_free=True) else None

    def resume(self, env: str, run_id: str, seconds: int) -> bool:
        """A resumed run takes its own lease back, expired or not, unless the watchdog or a rollback
        took it away first (one conditional UPDATE decides between them)."""
        moment = utc_now()
        return bool(self._db.query(
            "UPDATE release_leases SET expires_at = ?, updated_at = ? WHERE env = ? AND run_id = ? AND state = ?"
            " RETURNING env", (iso_ms(moment + timedelta(seconds=seconds)), iso_ms(moment), env, run_id, ACTIVE)))

    def renew(self, env: str, run_id: str, seconds: int, *, weight: int | None = None) -> bool:
        """Extend our own, still valid lease (and note the weight set); False when it was taken away."""
        moment = utc_now()
        sql = "UPDATE release_leases SET expires_at = ?, updated_at = ?"
        args: tuple = (iso_ms(moment + timedelta(seconds=seconds)), iso_ms(moment))
        if weight is not None:
            sql, args = sql + ", weight = ?", args + (int(weight),)
        sql += " WHERE env = ? AND run_id = ? AND state = ? AND expires_at > ? RETURNING env"
        return bool(self._db.query(sql, args + (env, run_id, ACTIVE, iso_ms(moment))))

    def finish(self, env: str, run_id: str, state: str, *, note: str) -> bool:
        """Settle our lease: done (the released colour serves; back_to is the old one) or rolled back."""
        return bool(self._db.query(
            "UPDATE release_leases SET state = ?, note = ?, updated_at = ? WHERE env = ? AND run_id = ?"
            " AND state = ? RETURNING env", (state, note, iso_ms(utc_now()), env, run_id, ACTIVE)))

    def revoke(self, env: str, *, note: str, expired_only: bool) -> Lease | None:
        """Take an active lease away (only an expired one when ``expired_only``): the lease as it
        was, to exactly one caller, or None."""
        before = self.get(env)
        sql = "UPDATE release_leases SET state = ?, note = ?, updated_at = ? WHERE env = ? AND state = ?"
        args: tuple = (ROLLED_BACK, note, iso_ms(utc_now()), env, ACTIVE)
        if expired_only:
            sql, args = sql + " AND expires_at <= ?", args + (iso_ms(utc_now()),)
        if before is None or not self._db.query(sql + " AND run_id = ? RETURNING env", args + (before.run_id,)):
            return None
        return before

    def record(self, env: str, run_id: str, runbook: str, *, released: str, previous: str, holder: str) -> None:
        """A switch finished outside a lease (blue-green): remember where back is for release.rollback."""
        stamp = iso_ms(utc_now())
        self._upsert((env, run_id, runbook, previous, released, holder, stamp, DONE, 100, stamp,
                      f"{previous} -> {released}"), only_if_free=False)

    def _upsert(self, row: tuple, *, only_if_free: bool) -> bool:
        """Write the environment's row; ``only_if_free``: not over another run's active lease."""
        guard = " WHERE release_leases.state <> ? AND release_leases.run_id <> excluded.run_id" if only_if_free else ""
        return bool(self._db.query(
            f"INSERT INTO release_leases ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
            f" ON CONFLICT (env) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in COLUMNS[1:])}{guard}"
            " RETURNING env", row + ((ACTIVE,) if only_if_free else ())))
