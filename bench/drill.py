"""`inv dr.drill` against the hand-made pgBackRest PITR + pg_amcheck floor, same run, at several sizes.

Builds a throw-away local AEP source under /tmp (``inv db.setup``), then for each ``--scales``
value in order: ``pgbench -i -s SCALE`` into its ``aep`` database (which drops and reloads the
pgbench tables), ``inv backup.run --type full``, a check that the disk has 3x the database free.
It then times ``inv dr.drill`` as a whole process, and does by hand the floor: the SAME backup set
restored to the SAME target time the drill used, with the drill's pgBackRest ``--process-max`` and
fast-replay settings (pgbackrest restore + pg_ctl start + wait for promotion), then ``create
extension amcheck`` and ``pg_amcheck`` over what the drill checked with the drill's ``--jobs``
(bench/drill_floor.py). Prints a table per scale, a summary with one row per scale, a line fitted
to drill time against size, and the verdicts (bench/drill_report.py); writes the numbers to
bench/results/drill-<timestamp>.json.

    .venv/bin/python bench/drill.py [--scales 70,280,560] [--repeat N] [--no-warmup] [--thorough]
                                    [--lag] [--archive-timeout N] [--keep-state]

Before the drill and before the floor, outside the timed windows, the drill's deferred deletion
of its scratch copy and its detached trend-chart drawing are awaited and dirty pages are flushed
(sync): otherwise whichever runs next pays for the other's leftovers. At each scale one untimed
warm-up pair runs first (``--no-warmup`` to skip it): the first restore after a load runs cold,
2-2.5x slower than the next ones, whichever tool does it. ``--repeat N`` runs N judged drill +
floor pairs per scale and judges the medians (the machine may be shared). The order alternates,
floor first in pairs 1, 3, 5... (to the previous drill's target: the same backup set, a few
seconds less WAL), so that whatever the first restore of a pair pays or leaves behind falls on
both sides equally. ``--lag`` then leaves the source idle and reads its archive lag the way
aep-ops does (about 2 more minutes).

Targets, at every scale: drill whole process <= 1.3 x floor total; the drill's fixed overhead
(process start to its first step, plus its last step to exit) <= 0.3 s; drill seconds per GB
not growing with size (each scale's <= the previous scale's x 1.05); with ``--lag``, archive lag
of an idle source <= archive_timeout + 5 s. Exit 0 when all are met, 1 when one is missed, 2 when
the benchmark itself could not run. Runs as root (PostgreSQL tools as the postgres user through
runuser).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drill_env import (BIN, PGBIN, REPO, BenchError, as_postgres, connect, free_port, run_logged, say, settle,
                       teardown, write_results)
from drill_floor import floor_restore, idle_archive_lag
from drill_report import GB, scale_table, summary
from precompile import precompile

DISK_FACTOR = 3  # free space needed after the load, times the database: the drill's copy, the floor's, slack
BYTES_PER_SCALE = 15 * 2**20  # pgbench: about 15 MiB per scale unit (70: 1.0 GiB), for the check before a load


# --- steps ----------------------------------------------------------------------------------


def load_scale(state: Path, env: dict[str, str], port: int, scale: int, logs: Path,
               loaded_bytes: int) -> dict[str, Any]:
    """pgbench -i at this scale (the previous scale's tables are dropped), a full backup, the size;
    BenchError when the disk cannot hold the restores."""
    sock = state / "pg" / "aep-source" / "sock"
    free = shutil.disk_usage(state).free
    guess = scale * BYTES_PER_SCALE
    if free + loaded_bytes < guess * (1 + DISK_FACTOR):
        raise BenchError(f"scale {scale} is about {guess / GB:.1f} GiB: loading it and restoring it twice needs"
                         f" about {guess * (1 + DISK_FACTOR) / GB:.1f} GiB free under {state}, there are"
                         f" {(free + loaded_bytes) / GB:.1f} GiB (free a disk, or use smaller --scales)")
    timings: dict[str, Any] = {"scale": scale}
    say(f"[setup] pgbench -i -q -s {scale} aep (port {port})")
    timings["pgbench -i"], _ = run_logged(
        as_postgres([PGBIN / "pgbench", "-i", "-q", "-s", str(scale), "-h", sock, "-p", str(port), "aep"]),
        logs / f"pgbench-s{scale}.log")
    with connect(sock, port, "aep") as conn:
        size = conn.execute("select pg_database_size('aep')").fetchone()[0]
    say(f"        {timings['pgbench -i']:.1f} s; aep is {size / GB:.2f} GiB ({size} bytes)")
    timings["aep_bytes"] = size
    say("[setup] inv backup.run --type full")
    timings["backup.run full"], _ = run_logged([str(BIN / "inv"), "backup.run", "--type", "full"],
                                               logs / f"backup-run-s{scale}.log", env=env, cwd=REPO)
    say(f"        {timings['backup.run full']:.1f} s")
    free = shutil.disk_usage(state).free
    timings["free_bytes"] = free
    if free < DISK_FACTOR * size:
        raise BenchError(f"only {free / GB:.1f} GiB free under {state} for a {size / GB:.2f} GiB database at scale"
                         f" {scale}: the drill and the floor each restore a full copy, so the bench needs"
                         f" {DISK_FACTOR}x the database ({DISK_FACTOR * size / GB:.1f} GiB) free")
    say(f"        {free / GB:.1f} GiB free (>= {DISK_FACTOR}x the database)")
    return timings


def run_drill(state: Path, env: dict[str, str], logs: Path, tag: str, thorough: bool) -> dict[str, Any]:
    out = state / f"drill-result-{tag}.json"
    log = logs / f"drill-{tag}.log"
    argv = [str(BIN / "inv"), "dr.drill", "--json-file", str(out), *(["--thorough"] if thorough else [])]
    say("[drill] " + " ".join(argv[1:]))
    wall_start = time.time()
    seconds, rc = run_logged(argv, log, env=env, cwd=REPO, ok=(0, 5))
    wall_end = wall_start + seconds
    say(f"        {seconds:.1f} s end to end, exit {rc}")
    lines = log.read_text(errors="replace").splitlines()
    human = [ln for ln in lines if not ln.startswith("{")]
    say("\n".join("    " + ln for ln in human[-25:]))  # the summary; JSON log lines stay in the log file
    events = []
    for ln in lines:
        if ln.startswith("{"):
            try:
                event = json.loads(ln)
                events.append((datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp(),
                               event.get("event")))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    starts = [at for at, name in events if name == "step.start"]
    dones = [at for at, name in events if name == "step.done"]
    before = round(starts[0] - wall_start, 3) if starts else None
    after = round(wall_end - dones[-1], 3) if dones else None
    overhead = {"before_first_step": before, "after_last_step": after,
                "seconds": round(before + after, 3) if before is not None and after is not None else None,
                "before_first_log_event": round(events[0][0] - wall_start, 3) if events else None,
                "after_last_log_event": round(wall_end - events[-1][0], 3) if events else None}
    if out.is_file():
        report = json.loads(out.read_text())
    else:  # fall back to the report file the runbook writes
        found = sorted((state / "reports").glob("dr-drill-*.json"))
        if not found:
            raise BenchError("the drill wrote neither --json output nor a report")
        report = json.loads(found[-1].read_text())
    if not report.get("target_time") or not report.get("backup_label"):
        raise BenchError(f"the drill report has no target_time/backup_label: {report.get('error') or report}")
    return {"seconds": round(seconds, 3), "exit": rc, "report": report, "overhead": overhead,
            "journal": journal_steps(state, report.get("run_id") or "")}


def journal_steps(state: Path, run_id: str) -> dict[str, Any]:
    """Per-step wall times of the drill run and the restore step's own split, from the journal."""
    path = state / "journal.sqlite3"
    if not path.is_file() or not run_id:
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("select step_id, started_at, finished_at, outputs from steps where run_id = ?"
                            " order by idx", (run_id,)).fetchall()
        run = conn.execute("select started_at, finished_at from runs where id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
    steps, restore = {}, {}
    for step_id, started, finished, outputs in rows:
        if started and finished:
            steps[step_id] = round((datetime.fromisoformat(finished) - datetime.fromisoformat(started))
                                   .total_seconds(), 3)
        if step_id == "ensure_scratch_restored" and outputs:
            meta = json.loads(outputs)
            restore = {k: meta.get(k) for k in ("restore_seconds", "recovery_seconds", "pgbackrest_seconds")}
    engine = None
    if run and run[0] and run[1]:
        engine = round((datetime.fromisoformat(run[1]) - datetime.fromisoformat(run[0])).total_seconds(), 3)
    return {"steps": steps, "restore_split": restore, "run_seconds": engine}


def run_pairs(state: Path, env: dict[str, str], logs: Path, sc: dict[str, Any], args: argparse.Namespace) -> float:
    """The warm-up pair and the judged pairs of one scale into sc; returns when the last drill ended."""
    sc["runs"], sc["warmup"] = [], None
    last_report, idle_since = None, time.monotonic()
    for i in range(-1 if args.warmup else 0, max(1, args.repeat)):
        floor_first = i >= 0 and i % 2 == 0 and last_report is not None
        tag = f"s{sc['scale']}-{'warmup' if i < 0 else i + 1}"
        say(f"--- scale {sc['scale']}: warm-up drill + floor pair (not judged)" if i < 0
            else f"--- scale {sc['scale']}: drill + floor pair {i + 1} of {args.repeat}"
                 f" ({'floor' if floor_first else 'drill'} first)")
        if floor_first:  # to the previous drill's target: same backup set, a few seconds less WAL
            before_floor = settle(state)
            floor = {**floor_restore(state, last_report, logs, tag), "settle": before_floor,
                     "target_of_run": last_report.get("run_id")}
        before_drill = settle(state)
        drill = {**run_drill(state, env, logs, tag, args.thorough), "settle": before_drill}
        idle_since = time.monotonic()
        report = drill["report"]
        if not floor_first:
            before_floor = settle(state)
            floor = {**floor_restore(state, report, logs, tag), "settle": before_floor,
                     "target_of_run": report.get("run_id")}
        pair = {"order": "floor first" if floor_first else "drill first", "drill": drill, "floor": floor}
        last_report = report
        if i < 0:
            sc["warmup"] = pair
        else:
            sc["runs"].append(pair)
    return idle_since


def print_details(sc: dict[str, Any]) -> None:
    """Below a scale's table: the warm-up pair, each drill's steps and whether the floor replayed as far."""
    if sc["warmup"]:
        w = sc["warmup"]
        say(f"warm-up pair (not judged): drill {w['drill']['seconds']:.2f} s whole, restore phase"
            f" {w['drill']['report']['phases_seconds']['restore']:.2f} s; floor {w['floor']['total_seconds']:.2f} s")
    for i, run in enumerate(sc["runs"]):
        journal, report = run["drill"]["journal"], run["drill"]["report"]
        if journal.get("steps"):
            say(f"run {i + 1} drill steps (journal): " + ", ".join(f"{k} {v:.2f}" for k, v in journal["steps"].items()))
            out = run["drill"]["overhead"]
            say(f"run {i + 1} engine run {journal['run_seconds']} s of {run['drill']['seconds']:.2f} s whole process;"
                f" {out['before_first_step']} s to the first step.start, {out['after_last_step']} s after the last"
                f" step.done ({out['before_first_log_event']} s / {out['after_last_log_event']} s to any log event)")
        if run["floor"]["target_of_run"] == report.get("run_id"):
            same = run["floor"]["last_replayed_commit"] == report.get("last_replayed_commit")
            say(f"run {i + 1} last replayed commit: floor {run['floor']['last_replayed_commit']},"
                f" drill {report.get('last_replayed_commit')} ({'same' if same else 'DIFFERENT'})")
        else:
            say(f"run {i + 1} ({run['order']}): the floor restored to the target of drill"
                f" {run['floor']['target_of_run']}, last replayed commit {run['floor']['last_replayed_commit']}")
        amcheck = report.get("amcheck") or {}
        say(f"run {i + 1} pg_amcheck: drill {amcheck.get('checks')} ({amcheck.get('indexes')} indexes,"
            f" {amcheck.get('tables')} tables), restore --process-max={report.get('restore_process_max')},"
            f" fast_replay {report.get('fast_replay')}; floor {' '.join(run['floor']['amcheck']['argv'][1:-2])}")


# --- main -----------------------------------------------------------------------------------


def scales_of(text: str) -> list[int]:
    try:
        scales = [int(word) for word in text.split(",") if word.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of pgbench scales: {text!r}") from None
    if not scales or any(s < 1 for s in scales) or scales != sorted(set(scales)):
        raise argparse.ArgumentTypeError(f"scales must be positive and increasing: {text!r}")
    return scales


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", "--scale", dest="scales", type=scales_of, default=[70],
                        help="pgbench scales, increasing, comma-separated (70: about 1 GB; 70,280,560: 1, 4, 8 GB)")
    parser.add_argument("--keep-state", action="store_true", help="keep the state dir (clusters stopped)")
    parser.add_argument("--archive-timeout", type=int, default=None,
                        help="archive_timeout of the source in seconds (default: aep-ops' own, 60)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up pair at each scale (the first restore after a load is cold)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="drill + floor pairs per scale (each floor to its drill's target); verdicts on the median")
    parser.add_argument("--thorough", action="store_true",
                        help="inv dr.drill --thorough (pg_amcheck checks the heap too); the floor does the same")
    parser.add_argument("--lag", action="store_true",
                        help="at the end, measure the archive lag of the idle source (about 2 more minutes)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("run as root: PostgreSQL tools run as the postgres user through runuser")
        return 2

    def _terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    precompile()  # see bench/precompile.py
    state = Path(tempfile.mkdtemp(prefix="aep-drill-bench-", dir="/tmp"))
    state.chmod(0o755)
    logs = state / "bench-logs"
    logs.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
    env.update({"AEP_OPS_STATE_DIR": str(state), "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT": str(port),
                "AEP_OPS_NO_SYSTEM_CONFIG": "1"})
    if args.archive_timeout is not None:
        env["AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT"] = str(args.archive_timeout)
    say(f"state dir {state}, source port {port}, scales {args.scales}, {os.cpu_count()} cpus")
    started_at = datetime.now(timezone.utc)
    res: dict[str, Any] = {"started_at": started_at.isoformat(), "scales_asked": args.scales, "repeat": args.repeat,
                           "warmup": args.warmup, "thorough": args.thorough, "state_dir": str(state), "port": port,
                           "cpus": os.cpu_count(), "scales": [], "idle_lag": None}
    try:
        say("[setup] inv db.setup")
        seconds, _ = run_logged([str(BIN / "inv"), "db.setup"], logs / "db-setup.log", env=env, cwd=REPO)
        res["setup"] = {"db.setup": round(seconds, 3)}
        say(f"        {seconds:.1f} s")
        loaded, idle_since = 0, time.monotonic()
        for scale in args.scales:
            setup = load_scale(state, env, port, scale, logs, loaded)
            loaded = setup["aep_bytes"]
            sc = {"scale": scale, "aep_bytes": loaded, "setup": setup}
            res["scales"].append(sc)
            idle_since = run_pairs(state, env, logs, sc, args)
            say("\n" + scale_table(sc) + "\n")
            print_details(sc)
            say("")
        if args.lag:
            with connect(state / "pg" / "aep-source" / "sock", port) as conn:
                timeout = int(conn.execute("select setting from pg_settings where name = 'archive_timeout'")
                              .fetchone()[0])
            res["idle_lag"] = idle_archive_lag(env, idle_since, timeout)
        if len(res["scales"]) > 1:  # again, together, above the summary
            for sc in res["scales"]:
                say(scale_table(sc) + "\n")
        text, ok = summary(res)
        say(text + "\n")
        write_results("drill", started_at, res)
        return 0 if ok else 1
    except BenchError as exc:
        say(f"benchmark failed: {exc}")
        if res["scales"]:
            write_results("drill-failed", started_at, res)
        return 2
    finally:
        teardown(state, args.keep_state)


if __name__ == "__main__":
    sys.exit(main())
