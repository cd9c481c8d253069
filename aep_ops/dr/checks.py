"""The named checks of a DR drill, run against the restored copy (each a soft step: every
check runs and is reported even when an earlier one failed; any failure makes the drill exit 5)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from aep_ops.engine.context import RunContext
from aep_ops.dr.scratch import OnScratch
from aep_ops.engine.step import Plan
from aep_ops.base.errors import StepFailed, ToolMissing, VerificationFailed

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


class StartAmcheck(OnScratch):
    id = "start_amcheck"
    title = "Start pg_amcheck in the background"

    def check(self, ctx):
        from aep_ops.dr import amcheck_job

        return Plan.change(f"start pg_amcheck ({amcheck_job.options(ctx).describe()}, {amcheck_job.profile(ctx)}"
                           " drill) while the next checks run")

    def apply(self, ctx, plan):
        """A copy that refuses what the start needs (read-only: no CREATE EXTENSION), or no pg_amcheck
        on this machine, is not an error of this step: check_amcheck reports it as its verdict, and
        the other checks are still graded."""
        from aep_ops.dr import amcheck_job

        try:
            return amcheck_job.start(ctx)
        except (VerificationFailed, ToolMissing) as exc:
            return {"refused": str(exc)}


class CheckAmcheck(OnScratch):
    id = "check_amcheck"
    title = "pg_amcheck passes on every B-tree index (and table, in a thorough drill)"
    soft = True

    def check(self, ctx):
        from aep_ops.dr import amcheck_job

        refused = (ctx.outputs.get("start_amcheck") or {}).get("refused")
        if refused:
            raise VerificationFailed(refused)
        try:
            result = amcheck_job.collect(ctx)
        except ToolMissing as exc:  # a resumed drill starts pg_amcheck here
            raise VerificationFailed(str(exc)) from exc
        started = ctx.outputs.get("start_amcheck") or {}
        measured = {"indexes": started.get("indexes"), "tables": started.get("tables"), "jobs": started.get("jobs"),
                    "heap": started.get("heap"), "heapallindexed": started.get("heapallindexed"),
                    "profile": started.get("profile"), "amcheck_seconds": result.seconds,
                    "corrupt_relations": result.corrupt_relations}
        if result.errors and not result.findings:
            raise VerificationFailed("pg_amcheck could not check the copy: " + "; ".join(result.errors[:3]),
                                     details=measured)
        if not result.ok:
            shown = "; ".join(f.describe() for f in result.findings[:5])
            more = len(result.findings) + result.more_findings - 5
            corrupt = len(result.corrupt_relations)
            raise VerificationFailed(f"pg_amcheck found {corrupt} corrupt relation{'s' if corrupt != 1 else ''}"
                                     f" of {_checked(started)}: {shown}" + (f" (+{more} more)" if more > 0 else ""),
                                     details=measured)
        return Plan.unchanged(f"{_checked(started)} checked by pg_amcheck in {result.seconds:.1f} s"
                              f" ({started.get('checks')})", **measured)


def _checked(started: dict[str, Any]) -> str:
    indexes, tables = started.get("indexes") or 0, started.get("tables") or 0
    return f"{indexes} B-tree indexes" + (f" and {tables} tables" if tables else "")


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
