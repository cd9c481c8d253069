"""The named checks of a DR drill, run against the restored copy (each a soft step: every
check runs and is reported even when an earlier one failed; any failure makes the drill exit 5)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from aep_ops.engine.context import RunContext
from aep_ops.dr.scratch import OnScratch
from aep_ops.engine.step import Plan
from aep_ops.base.errors import StepFailed, VerificationFailed

DEFAULT_CRITICAL_TABLES = ("users", "roles", "permissions", "sessions", "audit_events", "projects", "documents")
DEFAULT_SMOKE_QUERIES = ("select count(*) from users", "select max(occurred_at) from audit_events")


def critical_tables(ctx: RunContext) -> list[str]:
    return list((ctx.env.get("drill") or {}).get("critical_tables") or DEFAULT_CRITICAL_TABLES)


@contextmanager
def restored_conn(ctx: RunContext) -> Iterator[Any]:
    """A connection to the drill's restored copy (autocommit).

    A query the copy answers with an error (StepFailed: a read-only copy refuses the INSERT of
    check_writable and the CREATE EXTENSION of check_amcheck) is that check's verdict: it fails
    as a check (soft), and the drill grades the others, reports, and keeps the copy (exit 5).
    Raised as a StepFailed, it stopped the drill at exit 1 with no report and the copy still
    running. A copy that cannot be reached stays an error: the run can be resumed."""
    from aep_ops.db.backends import backend_for

    with backend_for(ctx.settings).connect_restored(ctx.output("ensure_scratch_restored", "name")) as conn:
        try:
            yield conn
        except StepFailed as exc:
            raise VerificationFailed(str(exc)) from exc


class CheckMarkers(OnScratch):
    id = "check_markers"
    title = "Marker before the target present, marker after it absent"
    soft = True

    def check(self, ctx):
        sentinels = ctx.step_outputs("run_sentinels")
        if sentinels.get("read_only"):
            return Plan.unchanged("not run: --read-only-source wrote no markers", skipped=True)
        from aep_ops.pg.schema import markers_present

        with restored_conn(ctx) as conn:
            rows = markers_present(conn, [sentinels["before_id"], sentinels["after_id"]])
        before, after = sentinels["before_id"] in rows, sentinels["after_id"] in rows
        details = {"before_present": before, "after_present": after}
        if not before or after:
            raise VerificationFailed(f"marker before the target {'present' if before else 'MISSING'},"
                                     f" marker after it {'PRESENT' if after else 'absent'}", details=details)
        return Plan.unchanged("before present, after absent", **details)


class CheckRowCounts(OnScratch):
    id = "check_row_counts"
    title = "Critical tables hold the source's row counts as of the target"
    soft = True

    def check(self, ctx):
        from aep_ops.pg import facts

        expected = ctx.step_outputs("run_sentinels").get("counts")
        if not expected:
            return Plan.unchanged("not run: --read-only-source took no counts", skipped=True)
        with restored_conn(ctx) as conn:
            actual = facts.row_counts(conn, list(expected))
        wrong = {t: (expected[t], actual[t]) for t in expected if expected[t] != actual[t]}
        if wrong:
            raise VerificationFailed("row counts differ: " + ", ".join(
                f"{t} expected {e} got {a}" for t, (e, a) in sorted(wrong.items())), details={"counts": actual})
        return Plan.unchanged(f"{len(actual)} tables match", counts=actual)


class CheckAmcheck(OnScratch):
    id = "check_amcheck"
    title = "amcheck passes on every B-tree index"
    soft = True

    def check(self, ctx):
        from aep_ops.pg import facts

        with restored_conn(ctx) as conn:
            indexes = facts.btree_indexes(conn)
            failures = facts.amcheck_all(conn)
        if failures:
            raise VerificationFailed(f"{len(failures)} of {len(indexes)} indexes fail bt_index_check: "
                                     + "; ".join(f"{f.index.qualified}: {f.error}" for f in failures[:5]))
        return Plan.unchanged(f"{len(indexes)} B-tree indexes checked", indexes=len(indexes))


class CheckSmokeQueries(OnScratch):
    id = "check_smoke_queries"
    title = "Smoke queries answer"
    soft = True

    def check(self, ctx):
        queries = list((ctx.env.get("drill") or {}).get("smoke_queries") or DEFAULT_SMOKE_QUERIES)
        from aep_ops.pg import facts

        with restored_conn(ctx) as conn:
            _, failed = facts.smoke_queries(conn, queries)
        if failed:
            raise VerificationFailed("\n".join(_query_first(problem, queries) for problem in failed),
                                     details={"queries": queries})
        return Plan.unchanged(f"{len(queries)} queries answered", queries=queries)


def _query_first(problem: str, queries: list[str]) -> str:
    """``QUERY: ERROR`` with the query on one line (whitespace collapsed, cut at 60 characters), so
    that the first line of a failure names the query and PostgreSQL's message, and its DETAIL, HINT
    and CONTEXT lines follow."""
    for query in queries:
        if problem.startswith(f"{query}: "):
            short = " ".join(query.split())
            short = short if len(short) <= 60 else short[:57] + "..."
            return f"{short}: {problem[len(query) + 2:]}"
    return problem


class CheckWritable(OnScratch):
    id = "check_writable"
    title = "The restored database accepts writes"
    soft = True

    def check(self, ctx):
        from aep_ops.pg import facts
        from aep_ops.pg.schema import insert_marker

        with restored_conn(ctx) as conn:
            if facts.is_in_recovery(conn):
                raise VerificationFailed("the copy is still in recovery (read-only)")
            insert_marker(conn, f"writable check {ctx.run_id}")
        return Plan.unchanged("insert committed", verified_at=time.time())
