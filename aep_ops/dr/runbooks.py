"""``dr.drill``: a real disaster-recovery drill, measured against the RTO and RPO objectives.

Source ready -> preflight -> sentinel rows around a target time -> restore into a scratch
cluster at the target -> named checks -> RTO/RPO -> report, metrics -> cleanup. Every
check is soft (all run, all reported); any failure makes the drill exit 5 and keeps the
scratch cluster for inspection.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from aep_ops.db.backends import backend_class, backend_for, restore_timeout
from aep_ops.dr import scratch
from aep_ops.dr.checks import (CheckAmcheck, CheckMarkers, CheckRowCounts, CheckSmokeQueries, CheckWritable,
                               StartAmcheck, critical_tables)
from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed
from aep_ops.base.textfmt import duration
from aep_ops.db.runbooks import EnsureAppDatabase, EnsureRecentBackup, EnsureSourceCluster, EnsureStanza


class Preflight(Step):
    id = "preflight"
    title = "Preflight: source reachable, archiving healthy, restore space available"

    def check(self, ctx):
        backend = backend_for(ctx.settings)
        if ctx.dry_run and not backend.source_running():
            return Plan.unknown("the source is created or started by step 1")
        started = time.time()
        archive = backend.archive_facts()
        if archive["problems"]:
            raise StepFailed("; ".join(archive["problems"]))
        from aep_ops.pg import facts

        with backend.connect_source() as conn:
            size = facts.databases_size(conn)
        free = backend.free_bytes()
        if free is not None and free < 2 * size:
            raise StepFailed(f"only {free / 2**30:.1f} GiB free for the restore; it needs about"
                             f" {2 * size / 2**30:.1f} GiB; free space or set state_dir elsewhere")
        last, lag = archive["last_archived_at"], archive["archive_lag_seconds"]
        return Plan.unchanged(f"archive lag {'unknown' if lag is None else duration(lag)},"
                              f" source {size / 2**20:.0f} MiB", archive_lag_seconds=lag, source_bytes=size,
                              free_bytes=free, last_archived_at=last.isoformat() if last else None,
                              started_at=started)


class RunSentinels(Step):
    id = "run_sentinels"
    title = "Write a marker, take the target time, write a second marker, switch WAL"
    idempotent = False

    def check(self, ctx):
        if ctx.params["read_only_source"]:
            return Plan.unchanged("read-only source: no writes, target given", read_only=True,
                                  target_time=ctx.params["target"].isoformat())
        return Plan.change("insert two drill_markers rows around a target time and switch WAL")

    def apply(self, ctx, plan):
        from aep_ops.pg import facts
        from aep_ops.pg.schema import insert_marker

        backend = backend_for(ctx.settings)
        backend.before_target_writes()
        with backend.connect_source() as conn:
            before = insert_marker(conn, f"drill {ctx.run_id} before target")
            with conn.transaction():  # one snapshot for every count, taken after the first marker
                conn.execute("set transaction isolation level repeatable read")
                counts = facts.row_counts(conn, critical_tables(ctx))
            target = conn.execute("select clock_timestamp()").fetchone()[0]
            time.sleep(0.01)  # the second marker must commit strictly after the target
            after = insert_marker(conn, f"drill {ctx.run_id} after target")
            walfile = backend.archive_now(conn, ctx.progress)
        backend.wait_until_restorable(target, ctx.progress)
        return {"before_id": before, "after_id": after, "counts": counts, "read_only": False,
                "target_time": target.astimezone(timezone.utc).isoformat(), "walfile": walfile}


class EnsureScratchRestored(Step):
    id = "ensure_scratch_restored"
    title = "Restore into a scratch cluster at the target"

    def check(self, ctx):
        target = datetime.fromisoformat(ctx.output("run_sentinels", "target_time"))
        if ctx.run_id is None:  # a dry run with --read-only-source: the target is known, the run is not
            found = scratch.leftovers(ctx)
            return Plan.change((scratch.describe(found) + "; " if found else "")
                               + "restore into a new scratch cluster named after the run")
        state, meta = backend_for(ctx.settings).restore_state(_scratch_name(ctx), target)
        if state == "done":
            return Plan.unchanged(f"{meta['name']} already restored", **meta)
        found = scratch.leftovers(ctx)
        return Plan.change((scratch.describe(found) + "; " if found else "")
                           + ("redo the interrupted restore into " if state == "partial" else "restore into ")
                           + _scratch_name(ctx), leftovers=found)

    def apply(self, ctx, plan):
        reaped = scratch.reap(ctx, plan.details["leftovers"])  # frees their space and ports first
        target = datetime.fromisoformat(ctx.output("run_sentinels", "target_time"))
        timeout = restore_timeout(ctx.settings)
        meta = backend_for(ctx.settings).restore(_scratch_name(ctx), target, run_id=ctx.run_id, purpose=scratch.PURPOSE,
                                                 progress=ctx.progress, timeout=timeout,
                                                 fast_replay=scratch.fast_replay_wanted(ctx))
        return {**meta, "reaped_leftovers": reaped}

    def interrupted(self, ctx):
        """Stop the pgBackRest restore or the replaying server and remove the half-made copy:
        ``--resume`` restores again from scratch."""
        if backend_for(ctx.settings).abandon_restore(_scratch_name(ctx)):
            ctx.progress(f"interrupted: stopped and removed the half-restored {_scratch_name(ctx)}")


class Measure(scratch.OnScratch):
    id = "measure"
    title = "Measure RTO and RPO against the objectives"
    soft = True

    def check(self, ctx):
        restored = ctx.step_outputs("ensure_scratch_restored")
        started = datetime.fromisoformat(restored["restore_started_at"]).timestamp()
        # A failed check_writable journals no verified_at (its outputs are the failure's details):
        # the RTO is then not measurable, which fails this step, rather than crash it.
        verified = (ctx.outputs.get("check_writable") or {}).get("verified_at")
        target = datetime.fromisoformat(restored["target_time"])
        last = restored.get("last_replayed_commit")
        rpo = max(0.0, (target - datetime.fromisoformat(last)).total_seconds()) if last else None
        objectives = ctx.env.get("objectives") or {}
        m = {"rto_seconds": round(verified - started, 3) if verified else None, "rpo_seconds": rpo,
             "archive_lag_seconds": ctx.step_outputs("preflight").get("archive_lag_seconds"),
             "rto_objective_seconds": objectives.get("rto_seconds"),
             "rpo_objective_seconds": objectives.get("rpo_seconds")}
        missed = []
        if m["rto_seconds"] is None:
            missed.append("RTO not measurable: the copy was never verified writable")
        elif m["rto_objective_seconds"] and m["rto_seconds"] > m["rto_objective_seconds"]:
            missed.append(_exceeds("RTO", m["rto_seconds"], "the objective", m["rto_objective_seconds"]))
        for key, label in (("rpo_seconds", "RPO"), ("archive_lag_seconds", "archive lag")):
            if m[key] is not None and m["rpo_objective_seconds"] and m[key] > m["rpo_objective_seconds"]:
                missed.append(_exceeds(label, m[key], "the RPO objective", m["rpo_objective_seconds"]))
        if missed:
            raise VerificationFailed("; ".join(missed), details=m)
        return Plan.unchanged(f"RTO {duration(m['rto_seconds'])} (objective {duration(m['rto_objective_seconds'])}),"
                              f" RPO {duration(m['rpo_seconds'] or 0)}"
                              f" (objective {duration(m['rpo_objective_seconds'])})", **m)


def _exceeds(label: str, value: float, objective_label: str, objective: float) -> str:
    """"RTO 5 h exceeds the objective 4 h"; in seconds when human units would round both alike."""
    shown, limit = duration(value), duration(objective)
    if shown == limit:
        shown, limit = f"{value:.0f} s", f"{objective:.0f} s"
    return f"{label} {shown} exceeds {objective_label} {limit}"


class RunReport(scratch.OnScratch):
    id = "run_report"
    title = "Write the report (Markdown + JSON) and the metrics"

    def check(self, ctx):
        return Plan.change("write reports/dr-drill-<run>.{md,json}, the Prometheus metrics file and the trend chart")

    def apply(self, ctx, plan):
        from aep_ops.dr import report as drill_report

        report = drill_report.build(ctx, kept=kept_copy(ctx))
        paths = drill_report.write(ctx.settings, report)
        ctx.summary.update({**report, "report": str(paths["md"]), "metrics_file": str(paths["metrics"])})
        paths.update(charts := _redraw_trend(ctx))
        if charts:
            ctx.summary["trend_chart"] = str(charts["trend_png"])
        return {k: str(v) for k, v in paths.items()}


def _redraw_trend(ctx: RunContext) -> dict[str, object]:
    """reports/dr-trend-ENV.{png,svg} with this drill on it, drawn by a process of its own
    (dr/trend_draw.py: 1.4 s of CPU off the drill's path); a chart that cannot be started is one
    warning line, never a failed drill (the report and metrics are already written)."""
    from aep_ops.dr import trend_draw
    from aep_ops.base.log import get_logger

    try:
        charts = trend_draw.start(ctx.settings)
    except Exception as exc:  # noqa: BLE001 - evidence first: the chart is a view of it
        get_logger(__name__).warning("dr.trend.not_drawn", error=f"{type(exc).__name__}: {exc}",
                                     todo="`inv dr.history` redraws it")
        return {}
    return {f"trend_{kind}": path for kind, path in charts.items()}


class EnsureScratchRemoved(scratch.OnScratch):
    id = "ensure_scratch_removed"
    title = "Remove the scratch cluster (kept on failure or with --keep)"

    def check(self, ctx):
        if ctx.run_id is None:
            return Plan.unknown("the scratch cluster is named after the run")
        name = _scratch_name(ctx)
        if not backend_for(ctx.settings).exists(name):
            return Plan.unchanged(f"{name} is gone")
        kept = kept_copy(ctx)
        if kept:
            return Plan.unchanged(f"kept {name} {kept['reason']}; remove it with: {kept['discard_command']}",
                                  kept=name, dsn=kept["dsn"], discard_command=kept["discard_command"])
        return Plan.change(f"stop and remove {name}")

    def apply(self, ctx, plan):
        backend_for(ctx.settings).discard(_scratch_name(ctx))
        return {"removed": _scratch_name(ctx)}


_scratch_name = scratch.scratch_name


def kept_copy(ctx: RunContext) -> dict[str, Any] | None:
    """The scratch copy that stays after this drill, with how to reach it and remove it; None when it is
    removed. One rule for the report (written before the removal step) and the removal step."""
    reason = "with --keep" if ctx.params["keep"] else ("for inspection: checks failed" if ctx.soft_failures else None)
    restored = ctx.outputs.get("ensure_scratch_restored") or {}
    if reason is None or not restored.get("name"):
        return None
    return {"name": restored["name"], "dsn": restored.get("dsn"), "reason": reason,
            "discard_command": f"inv pitr.discard --env {ctx.env_name} {restored['name']}"}


@runbook("dr.drill", steps=[EnsureSourceCluster, EnsureAppDatabase, EnsureStanza, Preflight, EnsureRecentBackup,
                            RunSentinels, EnsureScratchRestored, StartAmcheck, CheckMarkers, CheckRowCounts,
                            CheckSmokeQueries, CheckAmcheck, CheckWritable, Measure, RunReport, EnsureScratchRemoved],
         summary="Disaster-recovery drill: restore to a point in time, verify, measure RTO/RPO, report",
         help={"target_time": "restore to this time (needs --read-only-source; default: a fresh sentinel time)",
               "keep": "keep the scratch cluster after a successful drill",
               "read_only_source": "write nothing to the source; use --target-time",
               "scale": "size of the local AEP database when it is first created",
               "thorough": "pg_amcheck also checks every table and that each index holds every row"
                           " (drill.amcheck.thorough; the weekly timer passes it)"},
         bounds={"scale": (0, 1000)})
def drill(ctx: RunContext, *, target_time: str = "", keep: bool = False, read_only_source: bool = False,
          scale: int = 0, thorough: bool = False) -> None:
    """Check the input; the local backend is the embedded default."""
    from aep_ops.pg.target import parse_target_time

    backend_class(ctx.settings).check_usable(ctx.settings)  # exit 2 before anything starts
    if read_only_source and not target_time:
        raise UsageError("--read-only-source needs --target-time (no sentinel writes, so no fresh target)")
    if target_time and not read_only_source:
        raise UsageError("--target-time goes with --read-only-source (otherwise the drill makes its own target)")
    ctx.params["target"] = parse_target_time(target_time) if target_time else None
