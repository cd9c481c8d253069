"""``certs.check`` over 50 endpoints against the floor: the same handshakes done directly with
``ssl`` in a thread pool of the same size, measured in the same run, alternating.

Real nginx on loopback serves a wildcard certificate from the test PKI; the 50 endpoints are
the same port with 50 SNI names (each one a full set of fresh connections). Per endpoint both
sides do what certs.check does: a verifying handshake at the best protocol, then one offering
only TLS 1.0 and one offering only TLS 1.1 (security level 0; nginx refuses both). The floor
does no parsing, assessment or bookkeeping: the ratio is aep-ops's own overhead.

Scenarios (median of ``--runs``):
- ``check-50``: ``aep_ops.certs.check.check_endpoints`` (what the runbook step calls), against
  ``floor-50``; target ratio <= 1.2.
- ``cli-50``: the whole ``inv certs.check --endpoints ...`` process (start-up, journal, metrics
  file included), for information.
- ``hung-50``: 49 endpoints and one that accepts TCP and never answers, ``certs.timeout`` 2 s:
  the time against the deadline plus one second (the issue's bound: ratio <= 1.0).

    .venv/bin/python bench/certs.py [--runs 5] [--parallel 16]

Prints one row per scenario; exit 1 when check-50's ratio is above 1.2 or hung-50 is past its bound.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aep_ops.certs.check import check_endpoints  # noqa: E402
from aep_ops.certs.endpoints import Endpoint  # noqa: E402
from aep_ops.certs.findings import Thresholds  # noqa: E402
from aep_ops.certs.probe import legacy_context  # noqa: E402
from aep_ops.testing.nginx import Site, start_nginx, stop_nginx  # noqa: E402
from aep_ops.testing.s3tls import SilentEndpoint  # noqa: E402
from aep_ops.testing.tlscerts import TestPki  # noqa: E402

BIN = Path(sys.executable).parent
COUNT = 50
TARGET = 1.2


def floor(endpoints: list[Endpoint], ca_file: str, parallel: int) -> float:
    """The same handshakes with nothing around them."""
    trust = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    trust.check_hostname = False
    trust.load_verify_locations(cafile=ca_file)
    legacy = [legacy_context("TLSv1"), legacy_context("TLSv1.1")]

    def one(ep: Endpoint) -> None:
        for context in [trust, *legacy]:
            with socket.create_connection((ep.address, ep.port), timeout=10) as sock:
                try:
                    with context.wrap_socket(sock, server_hostname=ep.sni) as tls:
                        tls.getpeercert(binary_form=True)
                except ssl.SSLError:
                    pass

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        list(pool.map(one, endpoints))
    return time.perf_counter() - started


def ours(endpoints: list[Endpoint], ca_file: str, parallel: int, timeout: float = 10) -> tuple[float, list]:
    started = time.perf_counter()
    rows = check_endpoints(endpoints, ca_file=ca_file, thresholds=Thresholds(), parallel=parallel, timeout=timeout)
    return time.perf_counter() - started, rows


def cli(endpoints: list[Endpoint], ca_file: str, state: str) -> float:
    spec = ",".join(ep.label for ep in endpoints)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
    env.update(AEP_OPS_STATE_DIR=state, AEP_OPS_NO_SYSTEM_CONFIG="1")
    started = time.perf_counter()
    proc = subprocess.run([str(BIN / "inv"), "certs.check", "--endpoints", spec, "--ca-file", ca_file],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"inv certs.check exited {proc.returncode}: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=16)
    args = parser.parse_args()
    subprocess.run([sys.executable, str(REPO / "bench" / "precompile.py")], check=True)
    base = Path(tempfile.mkdtemp(prefix="aep-certs-bench-"))
    pki = TestPki(base)
    wild = pki.leaf("wild", ["*.aep.test"])
    server = start_nginx([Site("wild", wild.fullchain, wild.key)])
    ca = str(pki.root_file)
    endpoints = [Endpoint("127.0.0.1", server.port("wild"), f"h{i}.aep.test") for i in range(COUNT)]
    try:
        ours(endpoints, ca, args.parallel)  # warm-up: imports, contexts
        floor(endpoints, ca, args.parallel)
        times: dict[str, list[float]] = {"check-50": [], "floor-50": [], "cli-50": [], "hung-50": []}
        for _ in range(args.runs):
            elapsed, rows = ours(endpoints, ca, args.parallel)
            if any(r["status"] != "ok" for r in rows):
                raise SystemExit(f"an endpoint was not ok: {[r for r in rows if r['status'] != 'ok'][:1]}")
            times["check-50"].append(elapsed)
            times["floor-50"].append(floor(endpoints, ca, args.parallel))
            times["cli-50"].append(cli(endpoints, ca, str(base / "state")))
            silent = SilentEndpoint()
            try:
                hung = endpoints[:COUNT - 1] + [Endpoint("127.0.0.1", silent.port, "hung.aep.test")]
                elapsed, rows = ours(hung, ca, args.parallel, timeout=2)
            finally:
                silent.close()
            if rows[-1]["problems"][0]["message"] != "no answer within 2s":
                raise SystemExit(f"the hung endpoint was not reported as hung: {rows[-1]}")
            times["hung-50"].append(elapsed)
    finally:
        stop_nginx(server)
    median = {name: statistics.median(values) for name, values in times.items()}
    ratio = median["check-50"] / median["floor-50"]
    hung_ratio = median["hung-50"] / 3.0
    print(f"{'scenario':<10} {'median s':>9} {'worst s':>8}  ratio")
    print(f"{'floor-50':<10} {median['floor-50']:>9.3f} {max(times['floor-50']):>8.3f}  1.00 (the floor)")
    print(f"{'check-50':<10} {median['check-50']:>9.3f} {max(times['check-50']):>8.3f}  {ratio:.2f}"
          f" against the floor (target <= {TARGET})")
    print(f"{'cli-50':<10} {median['cli-50']:>9.3f} {max(times['cli-50']):>8.3f}  "
          f"{median['cli-50'] / median['floor-50']:.2f} against the floor (whole process)")
    print(f"{'hung-50':<10} {median['hung-50']:>9.3f} {max(times['hung-50']):>8.3f}  {hung_ratio:.2f}"
          " of deadline + 1 s (2 s + 1 s; bound 1.00)")
    return 0 if ratio <= TARGET and hung_ratio <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
