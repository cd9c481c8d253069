"""Start-up time of the commands an on-call engineer types first, against `python -c pass`.

Runs each command N times as a whole process (same machine, same run) and prints the
median wall time, the ratio to the interpreter floor, and the 0.3 s target for `inv --list`.

    .venv/bin/python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from precompile import precompile

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_INV_LIST = 0.3


def median_wall(argv: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    precompile()  # see bench/precompile.py
    env = {**os.environ, "AEP_OPS_STATE_DIR": tempfile.mkdtemp(prefix="aep-bench-")}
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "inv --list": [str(BIN / "inv"), "--list"],
        "aep-ops --help": [str(BIN / "aep-ops"), "--help"],
        "inv runbooks.list": [str(BIN / "inv"), "runbooks.list"],
    }
    for argv in commands.values():  # warm the page cache and .pyc files
        subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    results = {name: median_wall(argv, args.runs, env) for name, argv in commands.items()}
    floor = results["python -c pass"]
    print(f"median wall time over {args.runs} runs (floor: python -c pass = {floor * 1000:.0f} ms)")
    for name, seconds in results.items():
        print(f"  {name:<20} {seconds * 1000:7.0f} ms   {seconds / floor:5.1f}x floor")
    ok = results["inv --list"] < TARGET_INV_LIST
    print(f"target: inv --list < {TARGET_INV_LIST * 1000:.0f} ms: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
