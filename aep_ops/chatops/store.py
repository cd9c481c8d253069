"""What the chat front door keeps between requests, in the journal's database (SQLite, or the
shared PostgreSQL, so that two replicas behind one load balancer see the same): requests already
seen (replays are refused), commands per person per minute (the rate limit), and where each
approved request reports (its channel and thread) with the words it was asked with."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS chat_seen (key TEXT PRIMARY KEY, seen_at REAL NOT NULL)",
    """CREATE TABLE IF NOT EXISTS chat_rate (
        who TEXT NOT NULL, minute INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (who, minute))""",
    """CREATE TABLE IF NOT EXISTS chat_requests (
        run_id TEXT PRIMARY KEY, channel TEXT NOT NULL, thread_ts TEXT, words TEXT NOT NULL,
        requested_by TEXT NOT NULL)""",
)
SEEN_SECONDS = 600  # twice the 5 minutes a signed request is accepted for
PURGE_EVERY = 60.0


class ChatStore:
    def __init__(self, journal: Any) -> None:
        self._db = journal.lock_backend()
        for statement in SCHEMA:
            self._db.execute(statement)
        self._purged = 0.0
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        """Record a request's key (its signature); False when it was seen before: a replay."""
        now = time.time()
        self._purge(now)
        return bool(self._db.query("INSERT INTO chat_seen (key, seen_at) VALUES (?, ?)"
                                   " ON CONFLICT (key) DO NOTHING RETURNING key", (key, now)))

    def count(self, who: str) -> int:
        """This person's commands in the current minute, this one included."""
        minute = int(time.time() // 60)
        rows = self._db.query("INSERT INTO chat_rate (who, minute, count) VALUES (?, ?, 1)"
                              " ON CONFLICT (who, minute) DO UPDATE SET count = chat_rate.count + 1"
                              " RETURNING count", (who, minute))
        return int(rows[0]["count"]) if rows else 1

    def _purge(self, now: float) -> None:
        with self._lock:
            if now - self._purged < PURGE_EVERY:
                return
            self._purged = now
        self._db.execute("DELETE FROM chat_seen WHERE seen_at < ?", (now - SEEN_SECONDS,))
        self._db.execute("DELETE FROM chat_rate WHERE minute < ?", (int(now // 60) - 1,))

    def remember(self, run_id: str, channel: str, thread_ts: str | None, words: list[str], requested_by: str) -> None:
        self._db.execute("INSERT INTO chat_requests (run_id, channel, thread_ts, words, requested_by)"
                         " VALUES (?, ?, ?, ?, ?)", (run_id, channel, thread_ts, json.dumps(words), requested_by))

    def request(self, run_id: str) -> dict[str, Any] | None:
        rows = self._db.query("SELECT * FROM chat_requests WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        return {**rows[0], "words": json.loads(rows[0]["words"])}
