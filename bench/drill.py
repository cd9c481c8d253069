"""`inv dr.drill` on a ~1 GB database against the hand-made pgBackRest PITR floor, same run.

Builds a throw-away local AEP source under /tmp (``inv db.setup``, ``pgbench -i -s SCALE``
into its ``aep`` database, ``inv backup.run --type full``), times ``inv dr.drill`` as a whole
process, then restores by hand the SAME backup set to the SAME target time the drill used
(pgbackrest restore + pg_ctl start + wait for promotion): the floor. Then leaves the source
idle and reads its archive lag the way aep-ops does. Prints a table with the targets and
writes the numbers to bench/results/drill-<timestamp>.json.

    .venv/bin/python bench/drill.py [--scale 70] [--keep-state] [--archive-timeout N] [--repeat N] [--no-warmup]

Before the drill and before the floor, outside the timed windows, the drill's deferred
deletion of its scratch copy is awaited and dirty pages are flushed (sync): otherwise whichever
runs next pays for the other's leftovers. One untimed warm-up pair runs first (``--no-warmup``
to skip it): the first restore after the 1 GB load runs cold, 2-2.5x slower than the next
ones, whichever tool does it. ``--repeat N`` runs N judged drill + floor pairs and judges the
medians (the machine may be shared). The order alternates, floor first in pairs 1, 3, 5...
(to the previous drill's target: the same backup set, a few seconds less WAL), so that
whatever the first restore of a pair pays or leaves behind falls on both sides equally.

Targets: drill restore phase <= 1.1 x floor total; drill end to end <= 1.5 x floor total;
archive lag of an idle source <= archive_timeout + 5 s. Exit 0 when all are met, 1 when one
is missed, 2 when the benchmark itself could not run. Runs as root (PostgreSQL tools as
the postgres user through runuser).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from typing import Any

from drill_env import (BIN, PGBIN, REPO, BenchError, as_postgres, chown_postgres, connect, free_port, run_logged,
                       say, settle, stop_cluster, tail, teardown, write_results)
from precompile import precompile

PGBACKREST = "/usr/bin/pgbackrest"
TARGET_RESTORE_RATIO = 1.1
TARGET_E2E_RATIO = 1.5
LAG_SLACK = 5.0
LAG_INTERVAL = 5.0


def pg_target(iso: str) -> str:
    """The report's target time as PostgreSQL/pgBackRest read it, with an explicit UTC offset."""
    when = datetime.fromisoformat(iso).astimezone(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f+00")


def stanza_of(config: Path) -> str:
    sections = [ln.strip()[1:-1] for ln in config.read_text().splitlines() if ln.strip().startswith("[")]
    names = [s for s in sections if s != "global"]
    if len(names) != 1:
        raise BenchError(f"{config}: expected one stanza section, found {names}")
    return names[0]


# --- steps ----------------------------------------------------------------------------------


def setup_source(state: Path, env: dict[str, str], port: int, scale: int, logs: Path) -> dict[str, float]:
    timings = {}
    say("[setup] inv db.setup")
    timings["db.setup"], _ = run_logged([str(BIN / "inv"), "db.setup"], logs / "db-setup.log", env=env, cwd=REPO)
    say(f"        {timings['db.setup']:.1f} s")
    sock = state / "pg" / "aep-source" / "sock"
    say(f"[setup] pgbench -i -s {scale} aep (port {port})")
    timings["pgbench -i"], _ = run_logged(
        as_postgres([PGBIN / "pgbench", "-i", "-q", "-s", str(scale), "-h", sock, "-p", str(port), "aep"]),
        logs / "pgbench.log")
    with connect(sock, port, "aep") as conn:
        size = conn.execute("select pg_database_size('aep')").fetchone()[0]
    say(f"        {timings['pgbench -i']:.1f} s; aep is {size / 2**30:.2f} GiB")
    timings["aep_bytes"] = size
    say("[setup] inv backup.run --type full")
    timings["backup.run full"], _ = run_logged([str(BIN / "inv"), "backup.run", "--type", "full"],
                                               logs / "backup-run.log", env=env, cwd=REPO)
    say(f"        {timings['backup.run full']:.1f} s")
    return timings


def run_drill(state: Path, env: dict[str, str], logs: Path, n: int) -> tuple[float, int, dict[str, Any], dict]:
    out = state / f"drill-result-{n}.json"
    log = logs / f"drill-{n}.log"
    say("[drill] inv dr.drill --json-file " + str(out))
    wall_start = time.time()
    seconds, rc = run_logged([str(BIN / "inv"), "dr.drill", "--json-file", str(out)], log, env=env, cwd=REPO, ok=(0, 5))
    wall_end = wall_start + seconds
    say(f"        {seconds:.1f} s end to end, exit {rc}")
    lines = log.read_text(errors="replace").splitlines()
    human = [ln for ln in lines if not ln.startswith("{")]
    say("\n".join("    " + ln for ln in human[-25:]))  # the summary; JSON log lines stay in the log file
    stamps = []
    for ln in lines:
        if ln.startswith("{"):
            try:
                stamps.append(datetime.fromisoformat(json.loads(ln)["timestamp"].replace("Z", "+00:00")).timestamp())
            except (ValueError, KeyError):
                continue
    outside = {"before_first_log_event": round(stamps[0] - wall_start, 3) if stamps else None,
               "after_last_log_event": round(wall_end - stamps[-1], 3) if stamps else None}
    if out.is_file():
        report = json.loads(out.read_text())
    else:  # fall back to the report file the runbook writes
        found = sorted((state / "reports").glob("dr-drill-*.json"))
        if not found:
            raise BenchError("the drill wrote neither --json output nor a report")
        report = json.loads(found[-1].read_text())
    if not report.get("target_time") or not report.get("backup_label"):
        raise BenchError(f"the drill report has no target_time/backup_label: {report.get('error') or report}")
    return seconds, rc, report, outside


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


def floor_restore(state: Path, report: dict[str, Any], logs: Path) -> dict[str, Any]:
    """pgbackrest restore of the drill's backup set to the drill's target, start, wait for promotion."""
    import psycopg

    config = state / "pgbackrest" / "pgbackrest.conf"
    stanza = stanza_of(config)
    base = state / "bench-floor"
    datadir, sock, log = base / "data", base / "sock", base / "postgres.log"
    base.mkdir(mode=0o755)
    for path in (datadir, sock):
        path.mkdir(mode=0o700)
        chown_postgres(path)
    log.touch()
    chown_postgres(log)
    port = free_port()
    target = pg_target(report["target_time"])
    label = report["backup_label"]
    say(f"[floor] pgbackrest restore --set={label} --target='{target}' into {datadir}")

    started = time.perf_counter()
    run_logged(as_postgres([PGBACKREST, f"--config={config}", f"--stanza={stanza}", "restore",
                            f"--pg1-path={datadir}", f"--set={label}", "--type=time", f"--target={target}",
                            "--target-action=promote", "--archive-mode=off"]), logs / "floor-pgbackrest.log")
    restored = time.perf_counter()
    with open(datadir / "postgresql.auto.conf", "a") as fh:  # read last: wins over the copied conf.d
        fh.write(f"port = {port}\nunix_socket_directories = '{sock}'\n")
    run_logged(as_postgres([PGBIN / "pg_ctl", "-D", datadir, "-l", log, "-w", "-t", "3600", "start"]),
               logs / "floor-pg_ctl.log")
    deadline = time.monotonic() + 3600
    last_commit = timeline = None
    while True:
        if not (datadir / "postmaster.pid").exists():
            raise BenchError(f"floor cluster exited during recovery:\n{tail(log, 10)}")
        try:
            with connect(sock, port, timeout=2) as conn:
                while conn.execute("select pg_is_in_recovery()").fetchone()[0]:
                    time.sleep(0.02)
                promoted = time.perf_counter()
                last_commit, timeline = conn.execute(
                    "select pg_last_xact_replay_timestamp(),"
                    " (select timeline_id from pg_control_checkpoint())").fetchone()
                break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise BenchError(f"floor cluster not promoted within an hour:\n{tail(log, 10)}") from None
            time.sleep(0.02)
    stop_lines = [ln for ln in log.read_text(errors="replace").splitlines() if "recovery stopping" in ln]
    result = {
        "restore_seconds": round(restored - started, 3),
        "recovery_seconds": round(promoted - restored, 3),
        "total_seconds": round(promoted - started, 3),
        "target": target, "backup_label": label, "port": port,
        "last_replayed_commit": last_commit.isoformat() if last_commit else None,
        "recovery_stop": stop_lines[-1].split("LOG:", 1)[-1].strip() if stop_lines else None,
    }
    say(f"        restore {result['restore_seconds']:.2f} s, start+recovery+promote"
        f" {result['recovery_seconds']:.2f} s, total {result['total_seconds']:.2f} s")
    say(f"        {result['recovery_stop'] or 'NO recovery stopping line in the log'}")
    stop_cluster(datadir)
    shutil.rmtree(base)
    return result


def idle_archive_lag(env: dict[str, str], idle_since: float, timeout: int) -> dict[str, Any]:
    """After archive_timeout + 10 s of idleness, read the lag as aep-ops does, every few seconds."""
    os.environ.update(env)
    sys.path.insert(0, str(REPO))
    from aep_ops import config
    from aep_ops.db import locations
    from aep_ops.db.backends import local_facts

    db = locations.local_db(config.load("local"))
    wait = idle_since + timeout + 10 - time.monotonic()
    if wait > 0:
        say(f"[lag]   leaving the source idle for another {wait:.0f} s (archive_timeout {timeout} s + 10 s)")
        time.sleep(wait)
    samples = []
    end = time.monotonic() + timeout
    while True:
        at = time.monotonic()
        facts = local_facts.archive_facts(db)
        with db.cluster.connect(db.dbname) as conn:
            lsn = conn.execute("select pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())").fetchone()
        samples.append({"at_seconds": round(at - idle_since, 1), "lag_seconds": facts["archive_lag_seconds"],
                        "last_archived_wal": facts["last_archived_wal"], "current_lsn": lsn[0],
                        "current_walfile": lsn[1], "failing": facts["failing"]})
        lag = facts["archive_lag_seconds"]
        say(f"        +{at - idle_since:5.0f} s  lag {'n/a' if lag is None else f'{lag:6.1f} s'}"
            f"  last archived {facts['last_archived_wal']}  current {lsn[0]} ({lsn[1]})")
        if at + LAG_INTERVAL > end:
            break
        time.sleep(LAG_INTERVAL)
    lags = [s["lag_seconds"] for s in samples if s["lag_seconds"] is not None]
    return {"archive_timeout": timeout, "samples": samples, "max_lag_seconds": max(lags) if lags else None}


# --- report ---------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def pair_measures(run: dict[str, Any]) -> list[tuple[str, float | None]]:
    """One drill + floor pair as (measure, seconds) rows."""
    drill, floor = run["drill"], run["floor"]
    report = drill["report"]
    split = drill["journal"].get("restore_split") or {}
    rows = [("drill phase: " + name, value) for name, value in report["phases_seconds"].items()]
    rows += [("drill end to end (inv dr.drill, whole process)", drill["seconds"]),
             ("drill RTO (report)", report.get("rto_seconds")),
             ("drill RPO (report)", report.get("rpo_seconds")),
             ("drill archive lag at start (report)", report.get("archive_lag_seconds")),
             ("drill pgbackrest restore (journal)", split.get("pgbackrest_seconds")),
             ("drill restore incl. prep (journal)", split.get("restore_seconds")),
             ("drill configure + start + replay + promote (journal)", split.get("recovery_seconds")),
             ("floor restore (pgbackrest restore)", floor["restore_seconds"]),
             ("floor start + recovery + promotion", floor["recovery_seconds"]),
             ("floor total", floor["total_seconds"])]
    return rows


def pair_ratios(run: dict[str, Any]) -> dict[str, float]:
    phases, total = run["drill"]["report"]["phases_seconds"], run["floor"]["total_seconds"]
    return {"restore_phase_over_floor": round(phases["restore"] / total, 3),
            "recovery_phase_over_floor": round(sum((run["drill"]["report"].get("restore_parts_seconds") or {}).get(
                k, 0) for k in ("files", "replay_and_promote")) / total, 3),  # the report's restore parts
            "end_to_end_over_floor": round(run["drill"]["seconds"] / total, 3)}


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def table(res: dict[str, Any]) -> tuple[str, bool]:
    runs, lag = res["runs"], res["idle_lag"]
    many = len(runs) > 1
    names = [name for name, _ in pair_measures(runs[0])]
    per_run = [dict(pair_measures(run)) for run in runs]
    ratios = [pair_ratios(run) for run in runs]
    for run, r in zip(runs, ratios):
        run["ratios"] = r
    med = {k: _median([r[k] for r in ratios]) for k in ratios[0]}
    max_lag, limit = lag["max_lag_seconds"], lag["archive_timeout"] + LAG_SLACK
    checks = [
        (f"drill restore phase / floor total (<= {TARGET_RESTORE_RATIO})", "restore_phase_over_floor",
         med["restore_phase_over_floor"] <= TARGET_RESTORE_RATIO),
        ("drill recovery phase / floor total (info)", "recovery_phase_over_floor", None),
        (f"drill end to end / floor total (<= {TARGET_E2E_RATIO})", "end_to_end_over_floor",
         med["end_to_end_over_floor"] <= TARGET_E2E_RATIO),
    ]
    lag_name = f"idle archive lag, max of {len(lag['samples'])} (<= archive_timeout + {LAG_SLACK:g} = {limit:g} s)"
    lag_ok = None if max_lag is None else max_lag <= limit
    width = max(len(n) for n in names + [c[0] for c in checks] + [lag_name])
    heads = [f"run {i + 1}" for i in range(len(runs))] + (["median"] if many else [])
    head = f"{'measure':<{width}}" + "".join(f"  {h:>10}" for h in heads) + "  target"
    rule = "-" * len(head)
    lines = [head, rule]
    for name in names:
        values = [r.get(name) for r in per_run] + ([_median([r.get(name) for r in per_run])] if many else [])
        lines.append(f"{name:<{width}}" + "".join(f"  {_s(v):>10}" for v in values))
    lines.append(rule)
    for name, key, ok in checks:
        values = [r[key] for r in ratios] + ([med[key]] if many else [])
        lines.append(f"{name:<{width}}" + "".join(f"  {v:9.2f}x" for v in values) + f"  {verdict(ok)}")
    pad = "".join(f"  {'':>10}" for _ in heads[:-1])
    lines.append(f"{lag_name:<{width}}{pad}  {_s(max_lag):>10}  {verdict(lag_ok)}")
    results = [run["drill"]["report"].get("result") for run in runs]
    drills_ok = all(r == "passed" for r in results)
    lines.append(f"drill result{'s' if many else ''}: {', '.join(map(str, results))}"
                 f"{'' if drills_ok else '  (a failed drill is kept running until teardown)'}")
    if many:
        lines.append(f"(verdicts on the median of {len(runs)} drill + floor pairs)")
    res["ratios"] = med
    res["targets"] = {"restore_phase_over_floor": verdict(checks[0][2]),
                      "end_to_end_over_floor": verdict(checks[2][2]), "idle_archive_lag": verdict(lag_ok)}
    return "\n".join(lines), all(ok is not False for *_, ok in checks) and lag_ok is True and drills_ok


def _s(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):8.2f} s"


# --- main -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70: about 1 GB)")
    parser.add_argument("--keep-state", action="store_true", help="keep the state dir (clusters stopped)")
    parser.add_argument("--archive-timeout", type=int, default=None,
                        help="archive_timeout of the source in seconds (default: aep-ops' own, 60)")
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="skip the untimed warm-up pair (the first restore after the load is cold)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="drill + floor pairs (each floor to its drill's target); verdicts on the median")
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
    say(f"state dir {state}, source port {port}, scale {args.scale}, {os.cpu_count()} cpus")
    started_at = datetime.now(timezone.utc)
    res: dict[str, Any] = {"started_at": started_at.isoformat(), "scale": args.scale, "state_dir": str(state),
                           "port": port, "cpus": os.cpu_count()}
    try:
        res["setup"] = setup_source(state, env, port, args.scale, logs)
        res["runs"], res["warmup"] = [], None
        last_report = None
        for i in range(-1 if args.warmup else 0, max(1, args.repeat)):
            floor_first = i >= 0 and i % 2 == 0 and last_report is not None
            say("--- warm-up drill + floor pair (not judged)" if i < 0
                else f"--- drill + floor pair {i + 1} of {args.repeat} ({'floor' if floor_first else 'drill'} first)")
            if floor_first:  # to the previous drill's target: same backup set, a few seconds less WAL
                before_floor = settle(state)
                floor = {**floor_restore(state, last_report, logs), "settle": before_floor,
                         "target_of_run": last_report.get("run_id")}
            before_drill = settle(state)
            seconds, rc, report, outside = run_drill(state, env, logs, i + 1)
            idle_since = time.monotonic()
            drill = {"seconds": round(seconds, 3), "exit": rc, "report": report, "settle": before_drill,
                     "process_outside_log_events": outside,
                     "journal": journal_steps(state, report.get("run_id") or "")}
            if not floor_first:
                before_floor = settle(state)
                floor = {**floor_restore(state, report, logs), "settle": before_floor,
                         "target_of_run": report.get("run_id")}
            pair = {"order": "floor first" if floor_first else "drill first", "drill": drill, "floor": floor}
            last_report = report
            if i < 0:
                res["warmup"] = pair
            else:
                res["runs"].append(pair)
        sock = state / "pg" / "aep-source" / "sock"
        with connect(sock, port) as conn:
            timeout = int(conn.execute("select setting from pg_settings where name = 'archive_timeout'")
                          .fetchone()[0])
        res["idle_lag"] = idle_archive_lag(env, idle_since, timeout)
        text, ok = table(res)
        say("\n" + text + "\n")
        if res["warmup"]:
            w = res["warmup"]
            say(f"warm-up pair (not judged): drill {w['drill']['seconds']:.2f} s end to end, restore phase"
                f" {w['drill']['report']['phases_seconds']['restore']:.2f} s; floor {w['floor']['total_seconds']:.2f} s")
        for i, run in enumerate(res["runs"]):
            journal, report = run["drill"]["journal"], run["drill"]["report"]
            if journal.get("steps"):
                say(f"run {i + 1} drill steps (journal): "
                    + ", ".join(f"{k} {v:.2f}" for k, v in journal["steps"].items()))
                out = run["drill"]["process_outside_log_events"]
                say(f"run {i + 1} engine run {journal['run_seconds']} s of {run['drill']['seconds']:.2f} s whole"
                    f" process; {out['before_first_log_event']} s before the first log event,"
                    f" {out['after_last_log_event']} s after the last")
            if run["floor"]["target_of_run"] == report.get("run_id"):
                same = run["floor"]["last_replayed_commit"] == report.get("last_replayed_commit")
                say(f"run {i + 1} last replayed commit: floor {run['floor']['last_replayed_commit']},"
                    f" drill {report.get('last_replayed_commit')} ({'same' if same else 'DIFFERENT'})")
            else:
                say(f"run {i + 1} ({run['order']}): the floor restored to the target of drill"
                    f" {run['floor']['target_of_run']}, last replayed commit {run['floor']['last_replayed_commit']}")
        say("")
        write_results("drill", started_at, res)
        return 0 if ok else 1
    except BenchError as exc:
        say(f"benchmark failed: {exc}")
        return 2
    finally:
        teardown(state, args.keep_state)


if __name__ == "__main__":
    sys.exit(main())
