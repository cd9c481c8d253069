"""One read-only command on 20 and 50 SSH hosts: aep-ops fleet.run against Ansible, pyinfra, fabric.

Starts real sshd hosts on loopback addresses (aep_ops.testing.sshd.SshFleet), then times
each tool as a whole process, strict host-key checking on for all of them:

- ``aep-ops fleet.run --hosts ... --known-hosts KH --identity KEY --parallel N -- CMD``
- Ansible ad-hoc: ``ansible all -i INVENTORY -m shell -a CMD -f N`` (host_key_checking on,
  UserKnownHostsFile=KH, StrictHostKeyChecking=yes; its default ControlPersist, with a fresh
  control-socket directory per run so that every run connects cold, as the others do)
- pyinfra: ``pyinfra -y --parallel N INVENTORY.py exec -- CMD`` (ssh_known_hosts_file=KH,
  ssh_strict_host_key_checking=yes)
- a bare fabric ThreadingGroup script (one thread per host, as fabric does) with paramiko's
  RejectPolicy and only KH loaded

Sessions on the test hosts get HOME=<host dir> (see isolated_home_fleet; ``--real-home``
to keep root's). Peers are installed by this script into their own virtualenvs under bench/.peers/ (fabric
is aep-ops' own dependency). Runs are interleaved (tool by tool, round by round) after one
untimed warm-up each, and every run must succeed on every host or the bench stops.

    .venv/bin/python bench/fanout.py [--sizes 20,50] [--runs 5] [--only aep-ops,pyinfra]

Targets: aep-ops <= 0.8x pyinfra and <= 0.3x Ansible (median wall time). Exit 0 when met,
1 when missed, 2 when the bench could not run. Results go to bench/results/fanout-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from precompile import precompile

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PEERS = REPO / "bench" / ".peers"
COMMAND = "uptime; df -h /; free -m"
TARGETS = {"pyinfra": 0.8, "ansible": 0.3}
PEER_PACKAGES = {"ansible": ("ansible-core", "ansible"), "pyinfra": ("pyinfra", "pyinfra")}
TOOLS = ("aep-ops", "fabric", "pyinfra", "ansible")


class BenchError(Exception):
    """The benchmark could not run (not a missed target)."""


def ensure_peer(name: str) -> Path:
    """bench/.peers/NAME/bin/TOOL, created with pip into its own virtualenv when missing."""
    package, tool = PEER_PACKAGES[name]
    venv = PEERS / name
    exe = venv / "bin" / tool
    if exe.exists():
        return exe
    print(f"installing {package} into {venv} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", package], capture_output=True, text=True)
    if proc.returncode != 0 or not exe.exists():
        raise BenchError(f"pip install {package} failed: {proc.stderr.strip()[-500:]}")
    return exe


class Setup:
    """Inventories and commands of every tool for the first ``n`` hosts of the fleet."""

    def __init__(self, fleet, n: int, work: Path, command: str, exes: dict[str, Path]):
        self.hosts = fleet.hosts[:n]
        self.n, self.work, self.command, self.exes = n, work / f"n{n}", command, exes
        self.work.mkdir(parents=True, exist_ok=True)
        self.identity = str(fleet.identity)
        self.known_hosts = self.work / "known_hosts"
        self.known_hosts.write_text("".join(h.known_hosts_line() + "\n" for h in self.hosts))
        self.state = self.work / "aep-state"
        self.env = {**os.environ, "AEP_OPS_STATE_DIR": str(self.state), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
                    "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_LOCAL_TEMP": str(self.work / "ansible-tmp"),
                    "ANSIBLE_HOME": str(self.work / "ansible-home"), "ANSIBLE_NOCOLOR": "1"}
        self.env.pop("AEP_OPS_CONFIG", None)
        self._write_inventories()
        self.run_number = 0

    def _write_inventories(self) -> None:
        ssh_args = f"-o UserKnownHostsFile={self.known_hosts} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes"
        lines = [f"h{i} ansible_host={h.address} ansible_port={h.port} ansible_user={h.user}"
                 for i, h in enumerate(self.hosts)]
        (self.work / "ansible.ini").write_text(
            "[fleet]\n" + "\n".join(lines) + "\n\n[all:vars]\n"
            f"ansible_ssh_private_key_file={self.identity}\nansible_python_interpreter=/usr/bin/python3\n"
            f"ansible_ssh_common_args='{ssh_args}'\n")
        data = {"ssh_user": self.hosts[0].user, "ssh_key": self.identity, "ssh_known_hosts_file": str(self.known_hosts),
                "ssh_strict_host_key_checking": "yes", "ssh_allow_agent": False, "ssh_look_for_keys": False}
        entries = ",\n".join(f"    ({h.address!r}, {{**DATA, 'ssh_port': {h.port}}})" for h in self.hosts)
        (self.work / "pyinfra_inventory.py").write_text(f"DATA = {data!r}\nfleet = [\n{entries},\n]\n")

    def argv(self, tool: str) -> tuple[list[str], dict[str, str]]:
        self.run_number += 1
        spec = ",".join(f"{h.user}@{h.address}:{h.port}" for h in self.hosts)
        if tool == "aep-ops":
            return [str(BIN / "aep-ops"), "fleet.run", "--hosts", spec, "--known-hosts", str(self.known_hosts),
                    "--identity", self.identity, "--parallel", str(self.n), "--", self.command], self.env
        if tool == "ansible":
            control = self.work / f"cp{self.run_number}"  # cold: no master left from an earlier run
            control.mkdir()
            env = {**self.env, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control)}
            return [str(self.exes["ansible"]), "all", "-i", str(self.work / "ansible.ini"), "-m", "shell",
                    "-a", self.command, "-f", str(self.n), "-o"], env
        if tool == "pyinfra":
            return [str(self.exes["pyinfra"]), "-y", "--parallel", str(self.n), str(self.work / "pyinfra_inventory.py"),
                    "exec", "--", self.command], self.env
        if tool == "fabric":
            return [sys.executable, __file__, "--fabric-peer", str(self.known_hosts), self.identity, self.command,
                    *(f"{h.user}@{h.address}:{h.port}" for h in self.hosts)], self.env
        raise ValueError(tool)

    def stop_ansible_masters(self) -> None:
        """End the ControlPersist masters Ansible left (by their sockets, nothing else)."""
        for sock in self.work.glob("cp*/*"):
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "x"], capture_output=True, timeout=10)


def real_home_fleet():
    from aep_ops.testing.sshd import SshFleet

    return SshFleet


def isolated_home_fleet():
    """SshFleet whose sessions get HOME=<host dir> (sshd SetEnv): the remote shell then reads
    no ~/.bashrc of this machine's root. On this dev machine that file runs `pyenv rehash`
    on every SSH session (about 0.1-0.3 s of CPU each, serialised on a lock file that a killed
    session leaves behind for 60 s), a cost no real fleet host has and that every tool pays."""
    from aep_ops.testing.sshd import SshFleet, SshTestHost

    class Host(SshTestHost):
        def _config(self) -> str:
            return super()._config() + f"SetEnv HOME={self.directory}\n"

    class Fleet(SshFleet):
        host_class = Host

    return Fleet


def timed(setup: Setup, tool: str) -> tuple[float, float]:
    """(wall seconds, client CPU seconds: user + sys of the tool and the children it waited for)."""
    argv, env = setup.argv(tool)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=setup.work, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0 or not succeeded_everywhere(tool, proc.stdout + proc.stderr, setup.n):
        raise BenchError(f"{tool} failed on {setup.n} hosts (exit {proc.returncode}):\n"
                         f"{proc.stdout[-1500:]}\n{proc.stderr[-1500:]}")
    return elapsed, cpu


def succeeded_everywhere(tool: str, output: str, n: int) -> bool:
    """Each tool's own evidence that every host ran the command."""
    stdout = output
    if tool == "aep-ops":
        return f"{n} host(s): {n} ok, 0 failed, 0 unreachable" in stdout
    if tool == "ansible":
        return sum(" | CHANGED | rc=0" in line for line in stdout.splitlines()) == n
    if tool == "fabric":
        return stdout.strip() == f"ok {n}"
    return re.search(rf"Grand total\s+{n}\s+{n}\s", stdout) is not None  # pyinfra: hosts, successes


def fabric_peer(argv: list[str]) -> int:
    """The bare fabric script: ThreadingGroup, strict host keys via RejectPolicy."""
    import paramiko
    from fabric import ThreadingGroup

    known_hosts, identity, command, *targets = argv
    group = ThreadingGroup(*targets, connect_kwargs={"key_filename": identity, "look_for_keys": False,
                                                     "allow_agent": False})
    for conn in group:
        conn.client._host_keys.clear()  # drop ~/.ssh/known_hosts that fabric loaded
        conn.client.load_host_keys(known_hosts)
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    results = group.run(command, hide=True, warn=True)
    ok = sum(1 for r in results.values() if getattr(r, "exited", 1) == 0)
    print(f"ok {ok}")
    return 0 if ok == len(targets) else 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--fabric-peer":
        return fabric_peer(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,50")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--command", default=COMMAND)
    parser.add_argument("--only", default=",".join(TOOLS), help="comma-separated subset of " + ", ".join(TOOLS))
    parser.add_argument("--real-home", action="store_true",
                        help="sessions keep the login user's HOME (and run its ~/.bashrc)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    precompile()  # see bench/precompile.py
    tools = [t for t in TOOLS if t in args.only.split(",")]
    fleet_class = real_home_fleet() if args.real_home else isolated_home_fleet()

    try:
        exes = {peer: ensure_peer(peer) for peer in ("ansible", "pyinfra") if peer in tools}
    except (BenchError, subprocess.CalledProcessError) as exc:
        print(f"bench could not run: {exc}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="aep-fanout-"))
    results: dict[int, dict[str, list[float]]] = {}
    cpu: dict[int, dict[str, list[float]]] = {}
    try:
        with fleet_class(work / "fleet") as fleet:
            started = time.monotonic()
            for _ in range(max(sizes)):
                fleet.add()
            print(f"{max(sizes)} sshd hosts up in {time.monotonic() - started:.1f}s; command: {args.command!r}",
                  flush=True)
            for n in sizes:
                setup = Setup(fleet, n, work, args.command, exes)
                try:
                    for tool in tools:  # warm-up: page cache, .pyc files, sshd's first fork
                        timed(setup, tool)
                    results[n] = {tool: [] for tool in tools}
                    cpu[n] = {tool: [] for tool in tools}
                    for round_ in range(args.runs):
                        for tool in tools:
                            wall, used = timed(setup, tool)
                            results[n][tool].append(wall)
                            cpu[n][tool].append(used)
                        print(f"  n={n} round {round_ + 1}: " + "  ".join(
                            f"{t} {results[n][t][-1]:.2f}s" for t in tools), flush=True)
                finally:
                    setup.stop_ansible_masters()
    except BenchError as exc:
        print(f"bench could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report(results, cpu, tools, args.runs)


def report(results: dict[int, dict[str, list[float]]], cpu: dict[int, dict[str, list[float]]], tools: list[str],
           runs: int) -> int:
    met = True
    print(f"\nmedian wall time over {runs} runs (whole process, strict host keys)")
    print(f"{'hosts':>5}  " + "  ".join(f"{t:>9}" for t in tools) + "   ratios (aep-ops / peer)")
    summary = {}
    for n, by_tool in results.items():
        med = {t: statistics.median(v) for t, v in by_tool.items()}
        ratios = {t: med["aep-ops"] / med[t] for t in tools if t != "aep-ops" and "aep-ops" in med}
        verdicts = []
        for peer, ratio in ratios.items():
            target = TARGETS.get(peer)
            ok = target is None or ratio <= target
            met &= ok
            verdicts.append(f"{peer} {ratio:.2f}x" + (f" (target <= {target}x: {'met' if ok else 'MISSED'})"
                                                      if target else ""))
        print(f"{n:>5}  " + "  ".join(f"{med[t]:>8.2f}s" for t in tools) + "   " + "; ".join(verdicts))
        cpu_med = {t: statistics.median(v) for t, v in cpu[n].items()}
        print(f"{'cpu':>5}  " + "  ".join(f"{cpu_med[t]:>8.2f}s" for t in tools) + "   (client user+sys)")
        summary[n] = {"median_seconds": med, "runs": by_tool, "ratios": ratios, "median_client_cpu": cpu_med,
                      "client_cpu": cpu[n]}
    out = REPO / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out / f"fanout-{stamp}.json").write_text(json.dumps({"targets": TARGETS, "results": summary}, indent=2))
    print("targets " + ("met" if met else "MISSED"))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
