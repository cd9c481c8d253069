"""The floor `bench/drill.py` holds `inv dr.drill` to: the same restore and check done by hand.

``floor_restore``: ``pgbackrest restore`` of the drill's backup set to the drill's target time with
the drill's ``--process-max``, the drill's fast-replay settings (``fsync=off``...) appended to
``postgresql.auto.conf``, ``pg_ctl start``, poll until promoted; then ``create extension if not
exists amcheck`` and ``pg_amcheck`` over what the drill checked (``--index=*.*``, or the heap with
``--heapallindexed``), with the drill's ``--jobs``. All timed, as restore, recovery and amcheck.

``idle_archive_lag``: the source's archive lag read the way aep-ops reads it, after it was left idle.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drill_env import (PGBIN, REPO, BenchError, as_postgres, chown_postgres, connect, free_port, run_logged, say,
                       stop_cluster, tail)

from aep_ops.base.cores import available_cores  # noqa: E402  (drill_env puts the repository on the path)

PGBACKREST = "/usr/bin/pgbackrest"
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


def amcheck_plan(report: dict[str, Any]) -> dict[str, Any]:
    """What the floor's pg_amcheck checks, from the drill report's ``amcheck`` (jobs, heap,
    heapallindexed); a report without one (the drill never started it) gets the quick defaults."""
    amcheck = report.get("amcheck") or {}
    mirrored = bool(amcheck.get("jobs"))
    if not mirrored:
        say("        the drill report has no amcheck section: the floor checks the B-tree indexes"
            " with one job per core")
    return {"jobs": int(amcheck.get("jobs") or available_cores()), "heap": bool(amcheck.get("heap")),
            "heapallindexed": bool(amcheck.get("heapallindexed")), "mirrored_from_report": mirrored}


def floor_restore(state: Path, report: dict[str, Any], logs: Path, tag: str) -> dict[str, Any]:
    """Restore + start + promotion + amcheck by hand, the same backup set, target, parallelism and
    replay settings as the drill's ``report``; ``tag`` names the log files."""
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
    processes = report.get("restore_process_max")
    fast = report.get("fast_replay") or {}
    check = amcheck_plan(report)
    say(f"[floor] pgbackrest restore --set={label} --target='{target}'"
        f" --process-max={processes or '(pgBackRest default)'} into {datadir}")
    if not processes:
        say("        the drill report has no restore_process_max: pgBackRest's default (1 process)")
    try:
        started = time.perf_counter()
        run_logged(as_postgres([PGBACKREST, f"--config={config}", f"--stanza={stanza}", "restore",
                                f"--pg1-path={datadir}", f"--set={label}", "--type=time", f"--target={target}",
                                "--target-action=promote", "--archive-mode=off",
                                *([f"--process-max={processes}"] if processes else [])]),
                   logs / f"floor-{tag}-pgbackrest.log")
        restored = time.perf_counter()
        with open(datadir / "postgresql.auto.conf", "a") as fh:  # read last: wins over the copied conf.d
            fh.write(f"port = {port}\nunix_socket_directories = '{sock}'\n")
            fh.writelines(f"{name} = '{value}'\n" for name, value in fast.items())
        run_logged(as_postgres([PGBIN / "pg_ctl", "-D", datadir, "-l", log, "-w", "-t", "3600", "start"]),
                   logs / f"floor-{tag}-pg_ctl.log")
        promoted, last_commit, seen = _wait_promoted(datadir, sock, port, log)
        with connect(sock, port, "aep") as conn:
            conn.execute("create extension if not exists amcheck")
        extension = time.perf_counter()
        words = [PGBIN / "pg_amcheck", f"--jobs={check['jobs']}", "--no-password",
                 *([] if check["heap"] else ["--index=*.*"]),  # heap checks: pg_amcheck's default selection
                 *(["--heapallindexed"] if check["heapallindexed"] else []),
                 "--", f"host={sock} port={port} user=postgres dbname=aep"]
        run_logged(words, logs / f"floor-{tag}-pg_amcheck.log")
        checked = time.perf_counter()
    finally:
        stop_cluster(datadir)
    stop_lines = [ln for ln in log.read_text(errors="replace").splitlines() if "recovery stopping" in ln]
    result = {
        "restore_seconds": round(restored - started, 3),
        "recovery_seconds": round(promoted - restored, 3),
        "amcheck_seconds": round(checked - promoted, 3),  # create extension + pg_amcheck
        "create_extension_seconds": round(extension - promoted, 3),
        "total_seconds": round(checked - started, 3),
        "restore_recovery_seconds": round(promoted - started, 3),
        "target": target, "backup_label": label, "port": port, "process_max": processes, "fast_replay": fast or None,
        "settings_seen": seen,
        "amcheck": {**check, "argv": [str(w) for w in words]},
        "last_replayed_commit": last_commit.isoformat() if last_commit else None,
        "recovery_stop": stop_lines[-1].split("LOG:", 1)[-1].strip() if stop_lines else None,
    }
    say(f"        restore {result['restore_seconds']:.2f} s, start+recovery+promote {result['recovery_seconds']:.2f} s,"
        f" amcheck {result['amcheck_seconds']:.2f} s ({check['jobs']} jobs"
        f"{', heap' if check['heap'] else ', indexes'}{', heapallindexed' if check['heapallindexed'] else ''}),"
        f" total {result['total_seconds']:.2f} s")
    say(f"        {result['recovery_stop'] or 'NO recovery stopping line in the log'}")
    if any(seen.get(name) != value for name, value in fast.items()):
        say(f"        WARNING: the floor runs with {seen}, not the drill's fast replay {fast}")
    shutil.rmtree(base)
    return result


def _wait_promoted(datadir: Path, sock: Path, port: int, log: Path) -> tuple[float, Any, dict[str, str]]:
    """Poll until the cluster is out of recovery: (perf_counter then, last replayed commit, the
    settings fast replay changes, as the promoted cluster reports them)."""
    import psycopg

    deadline = time.monotonic() + 3600
    while True:
        if not (datadir / "postmaster.pid").exists():
            raise BenchError(f"floor cluster exited during recovery:\n{tail(log, 10)}")
        try:
            with connect(sock, port, timeout=2) as conn:
                while conn.execute("select pg_is_in_recovery()").fetchone()[0]:
                    time.sleep(0.02)
                promoted = time.perf_counter()
                last_commit, *seen = conn.execute(
                    "select pg_last_xact_replay_timestamp(), current_setting('fsync'),"
                    " current_setting('full_page_writes'), current_setting('synchronous_commit')").fetchone()
                return promoted, last_commit, dict(zip(("fsync", "full_page_writes", "synchronous_commit"), seen))
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise BenchError(f"floor cluster not promoted within an hour:\n{tail(log, 10)}") from None
            time.sleep(0.02)


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
