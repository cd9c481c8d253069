"""``certs.deploy`` onto 10 hosts: the time from the command's start to the new serial verified on
every host, against the floor measured in the same run (the same files written and nginx reloads
done by hand over the same SSH connections, each host then asked once for its serial).

Ten real sshd hosts each with its own real nginx (tests/support/cert_fleet.py); a new version
is stored before each run and the hosts go back to the first certificate between runs. The
deploy is one host at a time by design (a failure stops the rollout at that host), and so is the
floor. What aep-ops adds: the process start, the journal, the check that asks every host first,
backups of the previous files, ``nginx -t``, and three confirmations per host after its reload.

    .venv/bin/python bench/certs_deploy.py [--runs 3] [--hosts 10]

Needs root and sshd (as the SSH tests do). Prints the median of each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aep_ops import config  # noqa: E402
from aep_ops.certs import store  # noqa: E402
from aep_ops.fleet.inventory import Host, executor_for  # noqa: E402
from aep_ops.testing.sshd import SshFleet  # noqa: E402
from aep_ops.testing.tlscerts import TestPki  # noqa: E402
from tests.support.cert_fleet import NAME, start_cert_fleet  # noqa: E402

BIN = Path(sys.executable).parent


def store_version(leaf) -> None:
    now = datetime.now(timezone.utc)
    cert = leaf.cert.read_text()
    store.save(config.load("bench"), "api", key_pem=leaf.key.read_text(), cert_pem=cert,
               chain_pem=leaf.fullchain.read_text()[len(cert):], fullchain_pem=leaf.fullchain.read_text(),
               serial=leaf.serial, not_before=now, not_after=now, issuer="bench", domains=[NAME],
               key_type="ecdsa-p256", directory="https://ca.test/dir", staging=True, now=now)


def reset(fleet, first) -> None:
    for host in fleet.hosts:
        shutil.copy(first.fullchain, host.cert_file())
        shutil.copy(first.key, host.key_file())
        host.nginx.reload()


def floor(fleet, settings, leaf) -> float:
    """The same writes and reloads by hand, one host at a time, then one TLS answer per host."""
    from aep_ops.executors.files import run_checked, write_file

    nginx = [shutil.which("nginx") or "/usr/sbin/nginx"]
    started = time.perf_counter()
    for host in fleet.hosts:
        ex = executor_for(settings, Host(host.name, host.address, host.ssh.port, host.ssh.user, role="web"))
        try:
            write_file(ex, str(host.cert_file()), leaf.fullchain.read_text())
            write_file(ex, str(host.key_file()), leaf.key.read_text(), "0600")
            prefix = str(host.directory / "nginx")
            run_checked(ex, [*nginx, "-p", prefix, "-c", f"{prefix}/nginx.conf", "-e", f"{prefix}/error.log",
                             "-s", "reload"], "reload")
        finally:
            ex.close()
        while fleet.served_by(host) != leaf.serial:
            time.sleep(0.01)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=10)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="aep-certs-deploy-bench-"))
    os.environ.update(AEP_OPS_STATE_DIR=str(base / "state"), AEP_OPS_NO_SYSTEM_CONFIG="1",
                      AEP_OPS_CONFIG=str(base / "aep-ops.yaml"))
    pki = TestPki(base / "pki")
    first = pki.leaf("first", [NAME])
    with SshFleet(base / "sshd") as sshd:
        fleet = start_cert_fleet(args.hosts, sshd.add, first)
        try:
            (base / "aep-ops.yaml").write_text("environments:\n" + fleet.config(
                "bench", identity=sshd.identity, known_hosts=sshd.known_hosts))
            settings = config.load("bench")
            ours, floors = [], []
            for run in range(args.runs):
                leaf = pki.leaf(f"new{run}", [NAME])
                reset(fleet, first)
                floors.append(floor(fleet, settings, leaf))
                reset(fleet, first)
                store_version(leaf)
                started = time.perf_counter()
                proc = subprocess.run([str(BIN / "inv"), "certs.deploy", "--env", "bench"], cwd=REPO,
                                      capture_output=True, text=True, timeout=600)
                ours.append(time.perf_counter() - started)
                if proc.returncode != 0 or set(fleet.served().values()) != {leaf.serial}:
                    raise SystemExit(f"certs.deploy failed ({proc.returncode}): {proc.stdout[-800:]}")
        finally:
            fleet.stop()
    mine, low = statistics.median(ours), statistics.median(floors)
    print(f"{'scenario':<12} {'median s':>9} {'worst s':>8}  ratio")
    print(f"{'floor-' + str(args.hosts):<12} {low:>9.3f} {max(floors):>8.3f}  1.00"
          " (writes + reload + first answer, by hand)")
    print(f"{'deploy-' + str(args.hosts):<12} {mine:>9.3f} {max(ours):>8.3f}  {mine / low:.2f}"
          " (whole `inv certs.deploy` process to the new serial verified on every host)")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
