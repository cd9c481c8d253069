"""What the drill benchmarks run on: commands as the postgres user with their output in a log, the
pause between timed phases, clusters stopped and the state removed at the end, results written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from aep_ops.testing.ports import free_port  # noqa: E402  (one allocator: ports outside the ephemeral range)

BIN = Path(sys.executable).parent
PGBIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
__all__ = ["BIN", "PGBIN", "PG_USER", "REPO", "BenchError", "free_port"]


class BenchError(Exception):
    """The benchmark could not run (not a missed target)."""


def say(message: str) -> None:
    print(message, flush=True)


def as_postgres(argv: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *map(str, argv)]


def chown_postgres(path: Path) -> None:
    shutil.chown(path, user=PG_USER, group=PG_USER)


def run_logged(argv: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path | str = "/",
               ok: tuple[int, ...] = (0,)) -> tuple[float, int]:
    """Run argv (output to ``log``), return (wall seconds, exit code); BenchError if the code is not ok."""
    started = time.perf_counter()
    with open(log, "ab") as fh:
        proc = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode not in ok:
        raise BenchError(f"`{' '.join(map(str, argv))}` exited {proc.returncode} after {seconds:.1f}s:\n"
                         + tail(log, 15))
    return seconds, proc.returncode


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no output)"
    return "\n".join("    " + ln for ln in text[-lines:])


def settle(state: Path) -> dict[str, Any]:
    """Before a timed phase: let the drill's deferred deletion of its scratch copy finish (it runs
    in a detached process after the drill) and its detached trend-chart drawing (``python -m
    aep_ops.dr.trend_draw``, about 1.5 s of CPU after the drill exits), then flush dirty pages, so
    that neither the drill nor the floor pays for what ran before it (the load, the backup, the
    other restore, the chart)."""
    started = time.perf_counter()
    restores = state / "pg" / "restores"
    while restores.is_dir() and any(p.name.startswith(".removing-") for p in restores.iterdir()):
        if time.perf_counter() - started > 120:
            raise BenchError(f"the drill's scratch copy under {restores} was not removed within 120 s")
        time.sleep(0.05)
    removal_wait = time.perf_counter() - started
    started = time.perf_counter()
    while drawing := trend_draws():
        if time.perf_counter() - started > 120:
            raise BenchError(f"the drill's trend chart is still being drawn after 120 s (pids {drawing})")
        time.sleep(0.05)
    draw_wait = time.perf_counter() - started
    dirty = _meminfo("Dirty")
    started = time.perf_counter()
    os.sync()
    return {"removal_wait_seconds": round(removal_wait, 3), "trend_draw_wait_seconds": round(draw_wait, 3),
            "dirty_kb_before_sync": dirty, "sync_seconds": round(time.perf_counter() - started, 3)}


def trend_draws() -> list[int]:
    """Pids of running ``python -m aep_ops.dr.trend_draw`` processes (any drill's: the machine is one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if b"aep_ops.dr.trend_draw" in argv:
            found.append(int(entry.name))
    return found


def _meminfo(key: str) -> int | None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def connect(sock: Path, port: int, dbname: str = "postgres", timeout: int = 5) -> Any:
    import psycopg

    return psycopg.connect(host=str(sock), port=port, dbname=dbname, user=PG_USER, connect_timeout=timeout,
                           autocommit=True, options="-c statement_timeout=30000")


def stop_cluster(datadir: Path) -> None:
    subprocess.run(as_postgres([PGBIN / "pg_ctl", "-D", datadir, "-m", "immediate", "-w", "-t", "60", "stop"]),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/", check=False)


def running_clusters(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if "PG_VERSION" in filenames:
            dirnames[:] = []  # do not walk a cluster's own files
            if "postmaster.pid" in filenames:
                found.append(Path(dirpath))
    return found


def teardown(state: Path, keep: bool) -> None:
    for datadir in running_clusters(state):
        say(f"[teardown] pg_ctl -m immediate stop {datadir}")
        stop_cluster(datadir)
    if keep:
        say(f"[teardown] state kept in {state}")
    else:
        shutil.rmtree(state, ignore_errors=True)
        say(f"[teardown] removed {state}")


def write_results(name: str, started_at: datetime, res: dict[str, Any]) -> Path:
    """bench/results/NAME-<UTC timestamp>.json, the figures a closing note quotes."""
    results = REPO / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"{name}-{started_at.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(res, indent=2, sort_keys=True, default=str) + "\n")
    say(f"wrote {out}")
    return out
