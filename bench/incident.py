"""``incident.diagnose`` on 20 real sshd hosts and a real PostgreSQL against the floor measured in
the same run, and with one hung host against its deadline.

The floor is what a person could do by hand in the same time: 20 parallel
``ssh -o BatchMode=yes`` each running the same host script the diagnosis sends (the same
``timeout -k`` wrapper and sections), plus one ``psql`` running the same queries, all started at
once and waited for together. The diagnosis is timed as a whole process (``aep-ops
incident.diagnose --env bench --json``: interpreter start, configuration, every source, the
ranking, the bundle and its archive). Runs alternate, floor then diagnosis, after one untimed
warm-up of each; medians are compared.

Then a 21st "host" that accepts TCP and never sends its SSH banner is added, with a per-source
deadline of 3 s: the whole process must end within the deadline plus 1 s.

    .venv/bin/python bench/incident.py [--hosts 20] [--runs 5] [--deadline 3]

Targets: diagnosis median <= 1.5x the floor's and under 5 s; with the hung host, the whole
process <= deadline + 1 s. Exit 0 when met, 1 when missed, 2 when the bench could not run.
Results go to bench/results/incident-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from fanout import isolated_home_fleet
from precompile import precompile

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RATIO_TARGET, SECONDS_TARGET, HUNG_SLACK = 1.5, 5.0, 1.0


class BenchError(Exception):
    """The benchmark could not run (not a missed target)."""


class SilentHost:
    """Accepts TCP connections and never answers (a host hung before its SSH banner)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.address, self.port = self.sock.getsockname()
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def write_config(path: Path, fleet, hosts, deadline: int) -> None:
    entries = "\n".join(f"      - {{name: h{i + 1}, address: {h.address}, port: {h.port}, role: api}}"
                        for i, h in enumerate(hosts))
    path.write_text(f"""
environments:
  bench:
    production: false
    backend: local
    ssh: {{user: {fleet.hosts[0].user}, identity: "{fleet.identity}", known_hosts: "{fleet.known_hosts}"}}
    hosts:
{entries}
    incident: {{deadline_seconds: {deadline}, parallel: 64, dsn: "env:BENCH_DSN", app_logs: ["/var/log/aep/*.log"]}}
""")


def floor_once(fleet, hosts, dsn: str, deadline: int) -> float:
    """20 ssh + 1 psql at once, as a person would run them; wall seconds until all have ended."""
    from aep_ops.incident import host_probe
    from aep_ops.incident.settings import DEFAULT_APP_LOGS, DEFAULT_ERROR_PATTERN
    from aep_ops.pg import activity

    remote = shlex.join(host_probe.host_argv(deadline=deadline, since_minutes=30, pattern=DEFAULT_ERROR_PATTERN,
                                             globs=DEFAULT_APP_LOGS))
    queries = [value for name, value in vars(activity).items() if name.endswith("_SQL") and isinstance(value, str)
               and name != "TOP_STATEMENTS_SQL" and "%(" not in value] + ["select * from pg_stat_archiver"]
    started = time.perf_counter()
    procs = [subprocess.Popen(["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                               "-o", f"UserKnownHostsFile={fleet.known_hosts}", "-i", str(fleet.identity),
                               "-p", str(h.port), "--", f"{h.user}@{h.address}", remote],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for h in hosts]
    psql = subprocess.Popen(["psql", "-X", "-q", "-d", dsn, "-c", ";\n".join(q.strip().rstrip(";") for q in queries)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for proc in [*procs, psql]:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise BenchError(f"floor command failed ({proc.args[0]}): {err.decode()[-500:]}")
    return time.perf_counter() - started


def diagnose_once(env: dict[str, str], expect_ok: int) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "aep-ops"), "incident.diagnose", "--env", "bench", "--json"], env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise BenchError(f"incident.diagnose failed (exit {proc.returncode}): {proc.stderr[-1500:]}")
    data = json.loads(proc.stdout)
    ok = sum(1 for s in data["sources"] if s["name"].startswith("host:") and s["status"] == "ok")
    if ok != expect_ok or next(s for s in data["sources"] if s["name"] == "postgres")["status"] != "ok":
        raise BenchError(f"expected {expect_ok} hosts and postgres ok: {data['sources']}")
    return elapsed, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--deadline", type=int, default=3)
    args = parser.parse_args()
    precompile()
    from aep_ops.testing.postgres import ClusterFactory

    work = Path(tempfile.mkdtemp(prefix="aep-incident-bench-"))
    clusters = ClusterFactory()
    fleet = isolated_home_fleet()(work / "fleet")
    silent = None
    try:
        hosts = [fleet.add() for _ in range(args.hosts)]
        cluster = clusters.make()
        dsn = cluster.dsn
        config = work / "aep-ops.yaml"
        write_config(config, fleet, hosts, deadline=10)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
        env.update(AEP_OPS_CONFIG=str(config), AEP_OPS_STATE_DIR=str(work / "state"), AEP_OPS_NO_SYSTEM_CONFIG="1",
                   BENCH_DSN=dsn)
        floor_once(fleet, hosts, dsn, 10)
        diagnose_once(env, args.hosts)
        floors, runs = [], []
        for number in range(args.runs):
            floors.append(floor_once(fleet, hosts, dsn, 10))
            runs.append(diagnose_once(env, args.hosts)[0])
            print(f"run {number + 1}: floor {floors[-1]:.2f} s, incident.diagnose {runs[-1]:.2f} s", flush=True)
        floor, ours = statistics.median(floors), statistics.median(runs)
        ratio = ours / floor

        silent = SilentHost()
        write_config(config, fleet, [*hosts, silent_host(silent, fleet)], deadline=args.deadline)
        hung = []
        for _ in range(3):
            elapsed, data = diagnose_once(env, args.hosts)
            status = next(s for s in data["sources"] if s["name"] == f"host:h{args.hosts + 1}")["status"]
            if status != "timeout":
                raise BenchError(f"the silent host was reported {status}, not timeout")
            hung.append(elapsed)
        result = {"hosts": args.hosts, "runs": args.runs, "floor_median_s": round(floor, 3),
                  "diagnose_median_s": round(ours, 3), "ratio": round(ratio, 3),
                  "floors_s": [round(x, 3) for x in floors], "diagnose_s": [round(x, 3) for x in runs],
                  "hung_deadline_s": args.deadline, "hung_runs_s": [round(x, 3) for x in hung],
                  "cpus": os.cpu_count(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        met = ratio <= RATIO_TARGET and ours < SECONDS_TARGET and max(hung) <= args.deadline + HUNG_SLACK
        result["targets_met"] = met
        print(f"{args.hosts} hosts + PostgreSQL: incident.diagnose {ours:.2f} s median vs floor {floor:.2f} s"
              f" (20 ssh + psql): {ratio:.2f}x (target <= {RATIO_TARGET}x and < {SECONDS_TARGET:g} s)")
        print(f"one hung host, deadline {args.deadline} s: whole process {', '.join(f'{x:.2f}' for x in hung)} s"
              f" (target <= {args.deadline + HUNG_SLACK:g} s)")
        out = REPO / "bench" / "results"
        out.mkdir(exist_ok=True)
        (out / f"incident-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json").write_text(json.dumps(result, indent=2))
        print("targets met" if met else "TARGETS MISSED")
        return 0 if met else 1
    except BenchError as exc:
        print(f"bench could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        if silent is not None:
            silent.close()
        fleet.close()
        clusters.close()


def silent_host(silent: SilentHost, fleet):
    """The silent listener as an inventory entry, known by the first host's key (never reached)."""
    from types import SimpleNamespace

    from aep_ops.testing.sshd import known_hosts_line

    with open(fleet.known_hosts, "a") as f:
        f.write(known_hosts_line(silent.address, silent.port, fleet.hosts[0].host_public_key) + "\n")
    return SimpleNamespace(address=silent.address, port=silent.port)


if __name__ == "__main__":
    sys.exit(main())
