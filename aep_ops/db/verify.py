"""Verification of a restored copy, whatever the backend: a primary, no commit after the target,
smoke queries answered. Reads only, through ``aep_ops.pg.facts``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aep_ops.base.errors import VerificationFailed


def verify_copy(conn: Any, target: datetime, smoke_queries: list[str], *, min_timeline: int | None) -> dict[str, Any]:
    """The copy is a primary (on a new timeline when ``min_timeline``), replayed no commit after
    the target, and answers the smoke queries. Raises VerificationFailed naming each failure."""
    from aep_ops.pg import facts

    problems, results = [], {}
    if facts.is_in_recovery(conn):
        problems.append("still in recovery")
    results["timeline"] = facts.timeline(conn) if min_timeline else None
    if min_timeline and results["timeline"] < min_timeline:
        problems.append(f"timeline {results['timeline']}: the copy was never promoted")
    last = facts.last_replayed_commit(conn)
    results["last_replayed_commit"] = last.isoformat() if last else None
    if last is not None and last > target:
        problems.append(f"replayed a commit at {last.isoformat()}, after the target {target.isoformat()}")
    answers, failed = facts.smoke_queries(conn, smoke_queries)
    results.update({f"smoke: {q}": a for q, a in answers.items()})
    problems += [f"smoke query {p}" for p in failed]
    if problems:
        raise VerificationFailed("; ".join(problems), details=results)
    return results
