"""The drill's pg_amcheck: started in the background right after the restore, so that the markers,
row counts and smoke queries are checked while it reads every index (and, in a thorough drill,
every table); ``check_amcheck`` then waits for it and grades what it found.

What it checks comes from ``drill.amcheck`` of the environment: ``jobs`` (default: the cores this
process may use), and per kind of drill (``quick``, the default, and ``thorough``, which the weekly
timer runs with ``--thorough``) whether the heap is checked and whether each index must hold every
heap tuple (``heapallindexed``). Defaults: quick checks the B-tree indexes only, thorough all three.

The running job lives in this process only (``_RUNNING``, by run): a resumed drill, or one whose
start step ran in an earlier attempt, runs pg_amcheck again and waits for it.
"""

from __future__ import annotations

import time
from typing import Any

from aep_ops.base.cores import configured_or_cores
from aep_ops.engine.context import RunContext
from aep_ops.pg.amcheck import AmcheckJob, AmcheckOptions, AmcheckResult, conninfo_of

DEFAULTS = {"quick": {"heap": False, "heapallindexed": False}, "thorough": {"heap": True, "heapallindexed": True}}
_RUNNING: dict[str, AmcheckJob] = {}


def profile(ctx: RunContext) -> str:
    return "thorough" if ctx.params.get("thorough") else "quick"


def options(ctx: RunContext) -> AmcheckOptions:
    config = (ctx.env.get("drill") or {}).get("amcheck") or {}
    chosen = {**DEFAULTS[profile(ctx)], **{k: v for k, v in (config.get(profile(ctx)) or {}).items() if v is not None}}
    return AmcheckOptions(jobs=configured_or_cores(config.get("jobs")), heap=bool(chosen["heap"]),
                          heapallindexed=bool(chosen["heapallindexed"]))


def timeout(ctx: RunContext) -> float:
    from aep_ops.db.backends import restore_timeout

    return float(((ctx.env.get("drill") or {}).get("amcheck") or {}).get("timeout_seconds")
                 or restore_timeout(ctx.settings))


def start(ctx: RunContext) -> dict[str, Any]:
    """Make sure the amcheck extension is there, count what will be checked, start pg_amcheck.
    A copy that refuses (VerificationFailed: read-only, no amcheck) is check_amcheck's verdict."""
    from aep_ops.dr.checks import restored_conn
    from aep_ops.pg import facts

    wanted = options(ctx)
    with restored_conn(ctx) as conn:
        facts.ensure_amcheck(conn)
        counts = facts.checkable_relations(conn)
        conninfo, password = conninfo_of(conn)
        bindir = (ctx.env.get("postgres") or {}).get("bindir") or None
    stop(ctx)  # a job of an earlier attempt in this process
    job = AmcheckJob.start(bindir, conninfo, wanted, password=password)
    _RUNNING[ctx.run_id] = job  # a run that ends before check_amcheck stops it: dr/run_hooks.py
    return {"profile": profile(ctx), "jobs": wanted.jobs, "heap": wanted.heap, "heapallindexed": wanted.heapallindexed,
            "indexes": counts["indexes"], "tables": counts["tables"] if wanted.heap else 0,
            "bytes": counts["index_bytes"] + (counts["table_bytes"] if wanted.heap else 0),
            "checks": wanted.describe(), "started_at": time.time()}


def collect(ctx: RunContext) -> AmcheckResult:
    """Wait for this run's pg_amcheck (started again when this process did not start it), showing
    its progress; StepFailed when it runs past the timeout."""
    from aep_ops.pg.progress import Watch, stream_of

    job, started = _RUNNING.get(ctx.run_id), ctx.outputs.get("start_amcheck") or {}
    if job is None:
        started = start(ctx)
        job = _RUNNING[ctx.run_id]
    with Watch("pg_amcheck", lambda: (job.progress() or (None, None))[0], started.get("bytes"),
               verb_done="pg_amcheck checked", out=stream_of(ctx.progress), phase="amcheck"):
        result = job.wait(timeout(ctx))  # interrupted meanwhile: the step's interrupted() stops it
    _RUNNING.pop(ctx.run_id, None)
    return result


def stop(ctx: RunContext) -> bool:
    """Stop this run's pg_amcheck (an interrupted drill); True when one was running."""
    return stop_run(ctx.run_id)


def stop_run(run_id: str | None) -> bool:
    job = _RUNNING.pop(run_id, None) if run_id else None
    if job is None:
        return False
    running = job.running
    job.terminate()
    return running
