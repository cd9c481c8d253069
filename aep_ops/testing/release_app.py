"""One colour (blue or green) of the application a release moves traffic between: a real HTTP
process the tests put behind the ALB's data path (aep_ops/testing/alb_nginx.py), because moto
keeps the listener's weights but routes nothing.

    python -m aep_ops.testing.release_app --port P --colour blue

``GET /`` answers ``{"colour": "blue"}``; ``GET /healthz`` ``ok`` (503 once told unhealthy);
``GET /metrics`` the Prometheus counters ``http_requests_total{code=...}`` of ``/`` requests (what
a canary gate reads). ``POST /admin/degrade {"error_rate": r}`` makes exactly that share of ``/``
requests answer 500, spread evenly (request n fails when floor(n*r) moves), so a test can predict
the count; ``POST /admin/health {"healthy": false}`` fails the health check. The process prints
``READY <port>`` once it listens, so a starter waits for that line instead of sleeping.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

COLOURS = ("blue", "green")
ADDRESS = "127.0.0.1"


class AppState:
    """What the admin endpoints change, shared by the request threads."""

    def __init__(self, colour: str) -> None:
        self.colour = colour
        self.healthy = True
        self._lock = threading.Lock()
        self._error_rate = Fraction(0)
        self._served = 0  # ``/`` requests since the last degrade: the error pattern restarts there
        self.registry = CollectorRegistry()
        self.requests = Counter("http_requests", "Requests to / by status code", ["code"], registry=self.registry)
        self.duration = Histogram("http_request_duration_seconds", "Latency of / requests", registry=self.registry)
        for code in ("200", "500"):
            self.requests.labels(code=code)  # present at zero: a gate sees "no errors", not "no data"

    def degrade(self, error_rate: float) -> None:
        if not 0 <= error_rate <= 1:
            raise ValueError(f"error_rate must be within 0..1, not {error_rate}")
        with self._lock:
            # exact arithmetic: with floats, 100 * 0.29 is 28.999... and the 100th request would not fail
            self._error_rate, self._served = Fraction(error_rate).limit_denominator(10_000), 0

    def next_fails(self) -> bool:
        """True for exactly ``error_rate`` of the calls, evenly spread (deterministic)."""
        with self._lock:
            n, rate = self._served, self._error_rate
            self._served += 1
        return math.floor((n + 1) * rate) > math.floor(n * rate)  # floor of a Fraction: exact


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that want it
    server: "AppServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state = self.server.state
        if self.path == "/":
            started = time.perf_counter()
            code = 500 if state.next_fails() else 200
            body = {"colour": state.colour} if code == 200 else {"colour": state.colour, "error": "degraded"}
            # Counted before the answer leaves: a client that has its answer must find it in /metrics
            # (counted after, a scrape right after the last answer could miss it).
            state.requests.labels(code=str(code)).inc()
            self._send(code, json.dumps(body).encode(), "application/json")
            state.duration.observe(time.perf_counter() - started)
        elif self.path == "/healthz":
            self._send(200, b"ok\n") if state.healthy else self._send(503, b"unhealthy\n")
        elif self.path == "/metrics":
            self._send(200, generate_latest(state.registry), CONTENT_TYPE_LATEST)
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:  # noqa: N802
        state = self.server.state
        try:
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if self.path == "/admin/degrade":
                state.degrade(float(payload["error_rate"]))
            elif self.path == "/admin/health":
                state.healthy = bool(payload["healthy"])
            else:
                self._send(404, b"not found\n")
                return
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, f"{exc}\n".encode())
            return
        self._send(200, b"{}", "application/json")

    def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request would flood the test's output under load


class AppServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # bursts of new connections from the proxy: socketserver's 5 drops SYNs

    def __init__(self, port: int, state: AppState) -> None:
        self.state = state
        super().__init__((ADDRESS, port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--colour", choices=COLOURS, required=True)
    args = parser.parse_args(argv)
    server = AppServer(args.port, AppState(args.colour))  # bound and listening from here on
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# ---- the starter the tests use ----------------------------------------------------------------


@dataclass
class AppInstance:
    """A running release_app process; ``stop()`` kills and reaps it."""

    colour: str
    port: int
    process: subprocess.Popen = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def degrade(self, error_rate: float) -> None:
        self._post("/admin/degrade", {"error_rate": error_rate})

    def set_healthy(self, healthy: bool) -> None:
        self._post("/admin/health", {"healthy": healthy})

    def counts(self) -> dict[int, int]:
        """Requests to ``/`` answered so far, by status code, as /metrics reports them."""
        from prometheus_client.parser import text_string_to_metric_families

        text = self._request("GET", "/metrics").decode()
        counts: dict[int, int] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "http_requests":
                for sample in family.samples:
                    if sample.name == "http_requests_total":
                        counts[int(sample.labels["code"])] = int(sample.value)
        return counts

    def stop(self) -> None:
        from aep_ops.base.processes import stop_child

        if self.process.returncode is None:
            stop_child(self.process, grace=5)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _post(self, path: str, payload: dict) -> None:
        self._request("POST", path, json.dumps(payload).encode())

    def _request(self, method: str, path: str, body: bytes | None = None) -> bytes:
        import http.client

        conn = http.client.HTTPConnection(ADDRESS, self.port, timeout=5)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"{self.colour} app {method} {path}: HTTP {response.status} {data!r}")
        return data


def start_app(colour: str, port: int | None = None, timeout: float = 10) -> AppInstance:
    """Start one colour on ``port`` (default: from the test allocator) and return once it prints
    READY, i.e. once its socket listens; a process that exits or stays silent is an error."""
    from aep_ops.testing.ports import free_port

    port = port or free_port()
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: nobody reads it while the app runs
        process = subprocess.Popen([sys.executable, "-m", "aep_ops.testing.release_app", "--port", str(port),
                                    "--colour", colour], stdout=subprocess.PIPE, stderr=stderr)
        app = AppInstance(colour, port, process)
        try:
            _wait_ready(process, port, timeout)
        except BaseException as exc:
            app.stop()
            stderr.seek(0)
            raise RuntimeError(f"{exc}; its stderr: {stderr.read().decode(errors='replace')}") from exc
    return app


def _wait_ready(process: subprocess.Popen, port: int, timeout: float) -> None:
    """Read stdout up to the READY line (select with a deadline: a silent process never hangs us)."""
    deadline = time.monotonic() + timeout
    seen = b""
    while b"\n" not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"release app on port {port} printed no READY within {timeout:g}s: {seen!r}")
        fd = process.stdout.fileno()  # type: ignore[union-attr]
        readable, _, _ = select.select([fd], [], [], left)
        if readable:
            chunk = os.read(fd, 256)  # unbuffered: select sees every byte not read yet
            if not chunk:  # EOF: it exited
                process.wait(timeout=5)
                raise RuntimeError(f"release app on port {port} exited with {process.returncode}")
            seen += chunk
    if seen.split(b"\n", 1)[0].strip() != f"READY {port}".encode():
        raise RuntimeError(f"release app on port {port} said {seen!r}, not READY {port}")


if __name__ == "__main__":
    main()
