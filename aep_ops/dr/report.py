"""Evidence of a drill: the report (Markdown + JSON) and Prometheus metrics (the chart: dr/trend.py).

Metrics are written atomically in the text exposition format so that node_exporter's
textfile collector (or any scraper) can alert on a failed or missed drill:
``aep_ops_dr_last_success_timestamp_seconds`` keeps its value across failed drills.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aep_ops.base.atomicfile import replace_file
from aep_ops.base.redact import redact, redact_obj
from aep_ops.base.textfmt import duration, table_cell

CHECK_STEPS = ("check_markers", "check_row_counts", "check_smoke_queries", "check_amcheck", "check_writable",
               "measure")
PHASES = {"source": ("ensure_source_cluster", "ensure_app_database", "ensure_stanza"), "preflight": ("preflight",),
          "backup": ("ensure_recent_backup",), "sentinels": ("run_sentinels",),
          "restore": ("ensure_scratch_restored",), "verify": ("start_amcheck", *CHECK_STEPS[:-1])}
# The restore step's parts (they add up to its "restore" phase) and the RTO's (they add up to the RTO),
# with the words the Markdown report uses for them.
RESTORE_PARTS = {"files": "restore the files (pgBackRest, or the RDS restore)",
                 "replay_and_promote": "start the copy, replay WAL, promote",
                 "step_overhead": "the step's own work (leftovers reaped, journal)"}
RTO_PARTS = {"files": RESTORE_PARTS["files"], "replay_and_promote": RESTORE_PARTS["replay_and_promote"],
             "until_writable": "after promotion until verified writable (steps 8-13)"}


def reports_dir(settings: Any) -> Path:
    return settings.state_dir / "reports"


METRICS_NAME = "aep_ops_dr_{env}.prom"


def metrics_path(settings: Any) -> Path:
    """One file per environment, so a staging drill never rewrites production's series.

    ``drill.metrics_file`` is a template when it holds ``{env}`` (``/var/lib/node_exporter/aep_ops_dr_{env}.prom``),
    a directory when it ends with ``/`` or is one (the file ``aep_ops_dr_ENV.prom`` goes in it); any other
    value is taken as this environment's own file. Default: aep_ops_dr_ENV.prom in ``metrics.dir``
    (STATE_DIR/metrics), beside the run metrics.
    """
    from aep_ops.metrics.textfile import metrics_dir

    env = settings.env_name
    configured = str((settings.env.get("drill") or {}).get("metrics_file") or "")
    if not configured:
        return metrics_dir(settings) / METRICS_NAME.format(env=env)
    if "{env}" in configured:
        return Path(configured.replace("{env}", env))
    if configured.endswith("/") or Path(configured).is_dir():
        return Path(configured) / METRICS_NAME.format(env=env)
    return Path(configured)


def build(ctx: Any, kept: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's facts; ``kept``: the scratch copy that stays after the drill (name, dsn, reason,
    discard_command), or None when it is removed."""
    restored = ctx.outputs.get("ensure_scratch_restored", {})
    measured = ctx.outputs.get("measure", {})
    checks = []
    for step_id in CHECK_STEPS:
        failed = ctx.soft_failures.get(step_id)
        details = ctx.outputs.get(step_id, {})
        status = "failed" if failed else ("skipped" if details.get("skipped") else "passed")
        checks.append({"id": step_id, "status": status, "detail": failed or _detail(details)})
    phases = {name: round(sum(ctx.timings.get(s, 0.0) for s in steps), 3) for name, steps in PHASES.items()}
    restore_parts = _restore_parts(restored, phases["restore"])
    if restore_parts:
        phases["restore"] = round(sum(restore_parts.values()), 3)
    return redact_obj({
        "runbook": "dr.drill", "run_id": ctx.run_id, "env": ctx.env_name,
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "result": "failed" if ctx.soft_failures else "passed",
        "source": restored.get("source"), "backup_label": restored.get("backup_label"),
        "backup_stop": restored.get("backup_stop"), "target_time": restored.get("target_time"),
        "restored_name": restored.get("name"), "restored_port": restored.get("port"),
        "timeline": restored.get("timeline"), "last_replayed_commit": restored.get("last_replayed_commit"),
        "recovery_stop": restored.get("recovery_stop"),
        "rto_seconds": measured.get("rto_seconds"), "rpo_seconds": measured.get("rpo_seconds"),
        "archive_lag_seconds": measured.get("archive_lag_seconds",
                                            ctx.outputs.get("preflight", {}).get("archive_lag_seconds")),
        "rto_objective_seconds": measured.get("rto_objective_seconds"),
        "rpo_objective_seconds": measured.get("rpo_objective_seconds"),
        **_sizes(ctx.outputs.get("preflight", {}).get("source_bytes"), restored.get("restore_seconds")),
        "checks": checks, "phases_seconds": phases, "reaped_leftovers": restored.get("reaped_leftovers", []),
        "restore_parts_seconds": restore_parts, "rto_parts_seconds": _rto_parts(restored, measured.get("rto_seconds")),
        "restore_process_max": restored.get("restore_process_max"), "fast_replay": restored.get("fast_replay"),
        "amcheck": _amcheck(ctx.outputs.get("start_amcheck") or {}, ctx.outputs.get("check_amcheck") or {}),
        "kept": kept,
    })


def _amcheck(started: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any] | None:
    """What pg_amcheck was asked to check, how, and how long it took (None: it never started)."""
    if "jobs" not in started:
        return None
    return {"profile": started.get("profile"), "checks": started.get("checks"), "jobs": started.get("jobs"),
            "heap": started.get("heap"), "heapallindexed": started.get("heapallindexed"),
            "indexes": started.get("indexes"), "tables": started.get("tables"),
            "seconds": checked.get("amcheck_seconds"), "corrupt_relations": checked.get("corrupt_relations") or []}


def _ms(value: Any) -> int:
    return round(float(value or 0) * 1000)


def _restore_parts(restored: dict[str, Any], wall: float) -> dict[str, float]:
    """The restore step split into parts that add up to it, in whole milliseconds (the rounding of
    every figure in the report): the files, then start + replay + promote (both measured by the
    backend), then the rest of the step's wall time. Restored in an earlier attempt (``--resume``),
    the step took no time now: the whole is then the two measured parts."""
    if "restore_seconds" not in restored:
        return {}
    files, replay = _ms(restored.get("restore_seconds")), _ms(restored.get("recovery_seconds"))
    overhead = max(0, _ms(wall) - files - replay)
    return {"files": files / 1000, "replay_and_promote": replay / 1000, "step_overhead": overhead / 1000}


def _rto_parts(restored: dict[str, Any], rto: Any) -> dict[str, float]:
    """The RTO (restore start to verified writable) as the same two measured parts plus the time
    from promotion to the writable check: they add up to the RTO in whole milliseconds."""
    if rto is None or "restore_seconds" not in restored:
        return {}
    files, replay = _ms(restored.get("restore_seconds")), _ms(restored.get("recovery_seconds"))
    return {"files": files / 1000, "replay_and_promote": replay / 1000,
            "until_writable": (_ms(rto) - files - replay) / 1000}


def _sizes(database_bytes: Any, restore_seconds: Any) -> dict[str, Any]:
    """Database size at preflight and restore throughput (that size over the pgBackRest/RDS restore
    time): what the trend chart needs to extrapolate a restore of next year's database."""
    throughput = (round(database_bytes / restore_seconds, 1)
                  if database_bytes and restore_seconds and restore_seconds > 0 else None)
    return {"database_bytes": database_bytes, "restore_seconds": restore_seconds,
            "restore_bytes_per_second": throughput}


def _detail(details: dict[str, Any]) -> str:
    if details.get("summary"):
        return str(details["summary"])
    return ", ".join(f"{k}={v}" for k, v in details.items() if k not in ("skipped",) and not isinstance(v, (dict, list)))


def write(settings: Any, report: dict[str, Any]) -> dict[str, Path]:
    directory = reports_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"dr-drill-{report['run_id']}"
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "metrics": metrics_path(settings)}
    _atomic(paths["json"], json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
    _atomic(paths["md"], markdown(report))
    _atomic(paths["metrics"], metrics(report, previous=_read_metrics(paths["metrics"], report["env"])))
    return paths


def markdown(r: dict[str, Any]) -> str:
    """The report for people: measures beside their own objectives in human units, one table row per
    check whatever its error holds (textfmt.table_cell), timings whose parts add up, and last, the
    kept scratch copy's DSN and the command that removes it."""
    cell = table_cell
    lines = [f"# DR drill {r['run_id']} on {r['env']}: {r['result'].upper()}", "",
             f"- Finished: {r['finished_at']}",
             f"- Restored: backup `{r['backup_label']}` (ended {r['backup_stop']}) + WAL to target {r['target_time']}",
             f"- Into: `{r['restored_name']}` on port {r['restored_port']}, timeline {r['timeline']}",
             f"- Last replayed commit: {r['last_replayed_commit']} ({cell(r['recovery_stop'])})",
             *_setup_lines(r), "",
             "| measure | value | objective |", "|---|---|---|",
             f"| RTO (restore start to verified, writable) | {duration(r['rto_seconds'])}"
             f" | {duration(r['rto_objective_seconds'])} |",
             f"| RPO (target minus last replayed commit) | {duration(r['rpo_seconds'])}"
             f" | {duration(r['rpo_objective_seconds'])} |",
             f"| Archive lag at drill start | {duration(r['archive_lag_seconds'])}"
             f" | {duration(r['rpo_objective_seconds'])} (the RPO objective) |", ""]
    rto_parts = r.get("rto_parts_seconds") or {}
    if rto_parts:
        lines += [f"RTO {r['rto_seconds']:.3f} s = " + " + ".join(
            f"{RTO_PARTS[k]} {v:.3f} s" for k, v in rto_parts.items()) + ".", ""]
    lines += ["## Checks", "", "| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c['id']} | {c['status']} | {cell(c['detail'])} |" for c in r["checks"]]
    lines += ["", "## Timings per phase", "",
              "Seconds, to the millisecond; the restore step's parts add up to it.", "",
              "| phase | steps | seconds |", "|---|---|---|"]
    parts = r.get("restore_parts_seconds") or {}
    order = [*PHASES, *(k for k in r["phases_seconds"] if k not in PHASES)]  # JSON sorts its keys
    for name in (k for k in order if k in r["phases_seconds"]):
        value = r["phases_seconds"][name]
        lines.append(f"| {name} | {', '.join(PHASES.get(name, ()))} | {_secs(value)} |")
        if name == "restore":
            lines += [f"| - {RESTORE_PARTS[k]} | | {_secs(v)} |" for k, v in parts.items()]
    kept = r.get("kept")
    if kept:
        lines += ["", "## Scratch copy kept", "",
                  f"`{kept['name']}` is kept {kept['reason']}. Connect with `{kept['dsn']}`.", "",
                  f"Remove it when done: `{kept['discard_command']}`"]
    return redact("\n".join(lines) + "\n")


def _setup_lines(r: dict[str, Any]) -> list[str]:
    """How the copy was restored and checked: the parallelism, pg_amcheck's scope, and the replay
    settings that make this copy a throw-away one."""
    lines = []
    if r.get("restore_process_max"):
        lines.append(f"- pgBackRest restore with {r['restore_process_max']} processes")
    amcheck = r.get("amcheck")
    if amcheck:
        took = f" in {amcheck['seconds']:.3f} s" if amcheck.get("seconds") is not None else ""
        lines.append(f"- pg_amcheck ({amcheck['profile']} drill): {amcheck['checks']}{took}")
    if r.get("fast_replay"):
        unsafe = ", ".join(f"{k}={v}" for k, v in r["fast_replay"].items())
        lines.append(f"- Started with {unsafe} for a fast replay: a throw-away copy that must never serve the"
                     " application (`pitr.cutover` refuses it; `pitr.restore` keeps the safe settings)")
    return lines


def _secs(value: float) -> str:
    """Seconds to the millisecond (the figures add up), and in human units from a minute on."""
    return f"{value:.3f}" + (f" ({duration(value)})" if value >= 60 else "")


def metrics(r: dict[str, Any], previous: dict[str, float]) -> str:
    """The drill's file, in the text format with three decimals (dashboards and greps read it so);
    each family's HELP and TYPE come from the one catalogue (aep_ops/metrics/catalogue.py)."""
    from aep_ops.metrics.catalogue import family

    env = r["env"]
    now = datetime.fromisoformat(r["finished_at"]).timestamp()
    last_success = now if r["result"] == "passed" else previous.get("aep_ops_dr_last_success_timestamp_seconds")
    values = [
        ("aep_ops_dr_last_run_timestamp_seconds", now),
        ("aep_ops_dr_last_success_timestamp_seconds", last_success),
        ("aep_ops_dr_result", 1 if r["result"] == "passed" else 0),
        ("aep_ops_dr_rto_seconds", r["rto_seconds"]),
        ("aep_ops_dr_rpo_seconds", r["rpo_seconds"]),
        ("aep_ops_dr_archive_lag_seconds", r["archive_lag_seconds"]),
        ("aep_ops_dr_database_bytes", r.get("database_bytes")),
        ("aep_ops_dr_restore_bytes_per_second", r.get("restore_bytes_per_second")),
    ]
    out = []
    for name, value in values:
        if value is None:
            continue
        out += [family(name).header(), f'{name}{{env="{env}"}} {float(value):.3f}']
    return "\n".join(out) + "\n"


def _read_metrics(path: Path, env: str) -> dict[str, float]:
    """This environment's previous values (a file shared before one file per env may hold others)."""
    if not path.exists():
        return {}
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r'^(\w+)\{env="([^"]*)"\} (\S+)$', line)
        if match and match.group(2) == env:
            found[match.group(1)] = float(match.group(3))
    return found


def _atomic(path: Path, text: str) -> None:
    replace_file(path, text.encode())
