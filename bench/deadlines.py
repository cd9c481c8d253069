"""How long aep-ops takes to give up on something that hangs, against the deadline it was given.

The tests prove the behaviour by ordering (a hung host held until the answer is in: the answer
came at the deadline, not after the host answered) and assert no durations: on a loaded 2-core
machine those are coin flips. The figures live here instead. Each scenario holds a hung
host or command (tests/support/fleet_hosts.py), times the call until it gives up, releases what
it held, and prints the measured time against the deadline as a ratio (1.00 = exactly at it):

- ``local-command``: LocalExecutor, a command that blocks, timeout 0.2 s (was test_local_executor: < 2 s)
- ``ssh-command``: SshExecutor, a remote command that blocks, timeout 0.5 s (was test_ssh_executor: < 2 s)
- ``ssh-silent``: SshExecutor, a host that never sends its banner, connect_timeout 0.5 s (was < 2.5 s)
- ``run-on-all``: run_on_all over 4 hosts, one blocking, one silent, timeout 2 s (was < 3 s)
- ``map-bounded``: map_bounded, one item hung, timeout 0.6 s (was test_map_bounded: < 1.5 s)
- ``engine-step``: a step with ``timeout = 0.3`` that blocks (SIGALRM) (was test_engine: < 3 s)
- ``fleet-run-cli``: the whole ``inv fleet.run --timeout 3`` process, one host blocking, one
  silent, ssh.connect_timeout 600 (was test_fleet_tasks: < 6 s; start-up included)

    .venv/bin/python bench/deadlines.py [--runs 5] [--only ssh-command,engine-step] [--max-ratio 2.0]

Needs root and sshd (as the SSH tests do). Prints one row per scenario (median and worst of
the runs); exit 1 when a median ratio is above ``--max-ratio``, 2 when a scenario did not end
at its deadline the way it must (e.g. it answered for another reason), 0 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aep_ops.base.errors import CommandTimeout, HostUnreachable  # noqa: E402
from aep_ops.testing.sshd import SshFleet, known_hosts_line  # noqa: E402
from tests.support.fleet_hosts import HeldCommand, HeldHost  # noqa: E402

BIN = Path(sys.executable).parent


class BenchError(Exception):
    """A scenario did not end the way it must (then its time means nothing)."""


def timed(call: Callable[[], object], expect: Callable[[object], bool], what: str) -> float:
    """Seconds until ``call`` returns or raises (both are how a deadline ends); ``expect`` judges
    the value or the exception, so that a run that ended for another reason is not timed."""
    started = time.monotonic()
    try:
        outcome: object = call()
    except Exception as exc:  # noqa: BLE001 - the timeout error is the expected outcome
        outcome = exc
    seconds = time.monotonic() - started
    if not expect(outcome):
        raise BenchError(f"{what}: ended with {outcome!r}")
    return seconds


def _raised(kind: type) -> Callable[[object], bool]:
    return lambda outcome: isinstance(outcome, kind)


def _known(work: Path, held: HeldHost, public_key: str) -> str:
    path = work / f"known_{held.port}"
    path.write_text(known_hosts_line(held.address, held.port, public_key) + "\n")
    return str(path)


def local_command(work: Path, fleet: SshFleet) -> tuple[float, float]:
    from aep_ops.executors.local import LocalExecutor

    held = HeldCommand(work / "held")
    try:
        return 0.2, timed(lambda: LocalExecutor().run(["sh", "-c", held.shell], timeout=0.2),
                          _raised(CommandTimeout), "the local command's timeout")
    finally:
        held.release()


def ssh_command(work: Path, fleet: SshFleet) -> tuple[float, float]:
    held = HeldCommand(work / "held")
    with fleet.hosts[0].executor() as ex:
        ex.run(["true"])  # connected: the deadline counts from the command
        try:
            return 0.5, timed(lambda: ex.run(["sh", "-c", held.shell], timeout=0.5), _raised(CommandTimeout),
                              "the remote command's timeout")
        finally:
            held.release()


def ssh_silent(work: Path, fleet: SshFleet) -> tuple[float, float]:
    host = fleet.hosts[0]
    held = HeldHost(host.address, host.port)
    try:
        with host.executor(port=held.port, connect_timeout=0.5,
                           known_hosts=_known(work, held, host.host_public_key)) as ex:
            return 0.5, timed(lambda: ex.run(["true"]), _raised(HostUnreachable), "the connect timeout")
    finally:
        held.close()


def run_on_all_hung(work: Path, fleet: SshFleet) -> tuple[float, float]:
    from aep_ops.executors.fleet import run_on_all

    ok, hung = fleet.hosts[:2]
    held = HeldCommand(work / "held")
    silent = HeldHost(ok.address, ok.port)
    script = f'case "$SSH_CONNECTION" in *" {hung.address} "*) {held.shell};; esac; echo up'
    executors = [ok.executor(), hung.executor(), fleet.hosts[2].executor(),
                 ok.executor(port=silent.port, connect_timeout=600, known_hosts=_known(work, silent,
                                                                                       ok.host_public_key))]
    try:
        return 2.0, timed(lambda: run_on_all(executors, ["sh", "-c", script], parallel=2, timeout=2),
                          lambda r: [o.status for o in r.outcomes] == ["ok", "unreachable", "ok", "unreachable"],
                          "run_on_all's deadline")
    finally:
        held.release()
        silent.close()
        for ex in executors:
            ex.close()


def map_bounded_hung(work: Path, fleet: SshFleet) -> tuple[float, float]:
    from aep_ops.executors.fleet import map_bounded

    release = threading.Event()

    def work_item(n: int) -> int:
        if n == 0:
            release.wait()
        return n

    try:
        return 0.6, timed(lambda: map_bounded(work_item, range(7), parallel=3, timeout=0.6),
                          lambda answers: answers[0].late and all(a.ok for a in answers[1:]), "map_bounded's deadline")
    finally:
        release.set()


def engine_step(work: Path, fleet: SshFleet) -> tuple[float, float]:
    from aep_ops import config
    from aep_ops.engine.runbook import runbook, unregister
    from aep_ops.engine.runner import run_runbook
    from aep_ops.engine.step import Step

    release = threading.Event()

    class Blocks(Step):
        id = "blocks"
        title = "Blocks until released"
        timeout = 0.3

        def apply(self, ctx, plan):
            release.wait()

    rb = runbook("bench.deadline", steps=[Blocks], summary="bench")(lambda ctx: None)
    try:
        return 0.3, timed(lambda: run_runbook(rb, config.load("local")),
                          lambda r: r.status == "failed" and "0.3s timeout" in r.error, "the step's timeout")
    finally:
        release.set()
        unregister("bench.deadline")


def fleet_run_cli(work: Path, fleet: SshFleet) -> tuple[float, float]:
    ok, hung, silent_target = fleet.hosts[:3]
    held = HeldCommand(work / "held")
    silent = HeldHost(silent_target.address, silent_target.port)
    known = work / "known_cli"
    known.write_text(fleet.known_hosts.read_text()
                     + known_hosts_line(silent.address, silent.port, silent_target.host_public_key) + "\n")
    conf = work / "aep-ops.yaml"
    conf.write_text(f"environments:\n  bench:\n    production: false\n    backend: local\n"
                    f"    ssh: {{user: {ok.user}, identity: '{fleet.identity}', known_hosts: '{known}',"
                    " connect_timeout: 600}\n")
    command = f'case "$SSH_CONNECTION" in *" {hung.address} "*) {held.shell};; esac; echo up'
    hosts = ",".join(f"{h.address}:{h.port}" for h in (ok, hung)) + f",{silent.address}:{silent.port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
    env.update(AEP_OPS_CONFIG=str(conf), AEP_OPS_STATE_DIR=str(work / "state"), AEP_OPS_NO_SYSTEM_CONFIG="1",
               PYTHONPATH=str(REPO))
    argv = [str(BIN / "inv"), "fleet.run", "--env", "bench", "--hosts", hosts, "--timeout", "3", "--", command]
    try:
        return 3.0, timed(lambda: subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120),
                          lambda p: p.returncode == 1 and "2 unreachable" in p.stdout, "fleet.run --timeout 3")
    finally:
        held.release()
        silent.close()


SCENARIOS = {"local-command": local_command, "ssh-command": ssh_command, "ssh-silent": ssh_silent,
             "run-on-all": run_on_all_hung, "map-bounded": map_bounded_hung, "engine-step": engine_step,
             "fleet-run-cli": fleet_run_cli}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenario names")
    parser.add_argument("--max-ratio", type=float, default=2.0, help="exit 1 when a median ratio is above it")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    base = Path(tempfile.mkdtemp(prefix="aep-deadlines-"))
    os.environ.update(AEP_OPS_STATE_DIR=str(base / "state"), AEP_OPS_NO_SYSTEM_CONFIG="1")
    from aep_ops.base import log

    log.configure(base / "state", level="error", stream=open(os.devnull, "w"), tty=False)  # the log file only
    missed = []
    print(f"{'scenario':<15} {'deadline':>8} {'median':>8} {'worst':>8} {'ratio':>6} {'worst':>6}")
    with SshFleet(base / "sshd") as fleet:
        for _ in range(3):
            fleet.add()
        for name in names:
            measured = []
            for run in range(args.runs):
                work = base / f"{name}-{run}"
                work.mkdir()
                try:
                    deadline, seconds = SCENARIOS[name](work, fleet)
                except BenchError as exc:
                    print(f"{name}: cannot be measured: {exc}", file=sys.stderr)
                    return 2
                measured.append(seconds)
            median, worst = statistics.median(measured), max(measured)
            ratio = median / deadline
            missed += [name] if ratio > args.max_ratio else []
            print(f"{name:<15} {deadline:>7.2f}s {median:>7.2f}s {worst:>7.2f}s {ratio:>6.2f} {worst / deadline:>6.2f}",
                  flush=True)
    if missed:
        print(f"median above {args.max_ratio:g}x the deadline: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
