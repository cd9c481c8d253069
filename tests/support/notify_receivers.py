"""Real HTTP receivers standing in for PagerDuty's Events API, OpsGenie's Alert API and a Slack
incoming webhook: each records every request (method, path, headers, JSON body) and answers as
the test scripted it: a status (429 with Retry-After, 500, ...), or ``HANG`` (read the request,
never answer until the test ends). 127.0.0.1, a port the kernel picks."""

from __future__ import annotations

import json
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import unquote

HANG = "hang"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # percent-decoded, query included
    headers: dict[str, str]
    body: Any  # the JSON body, or the text when it is not JSON
    at: float  # time.monotonic() when it arrived


class Receiver:
    def __init__(self, name: str, ok: int) -> None:
        self.name, self.ok = name, ok
        self.requests: list[Recorded] = []
        self.script: list[Any] = []  # answers to give, in order (a status or HANG); then ``always``
        self.always: Any = None  # None: ``ok``
        self.retry_after = "0"
        self.url = ""
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.arrived = threading.Condition(self.lock)

    def answer(self, *answers: Any, always: Any = None) -> "Receiver":
        with self.lock:
            self.script, self.always = list(answers), always
        return self

    def bodies(self) -> list[Any]:
        with self.lock:
            return [r.body for r in self.requests]

    def wait_for(self, count: int, timeout: float = 30) -> list[Recorded]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)

    def _next(self) -> Any:
        if self.script:
            return self.script.pop(0)
        return self.ok if self.always is None else self.always


@contextmanager
def receiver(name: str, ok: int = 202) -> Iterator[Receiver]:
    rec = Receiver(name, ok)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with rec.arrived:
                rec.requests.append(Recorded(self.command, unquote(self.path), dict(self.headers.items()), body,
                                             time.monotonic()))
                answer = rec._next()
                rec.arrived.notify_all()
            if answer == HANG:
                rec.released.wait()
                self.close_connection = True
                return
            payload = b'{"status":"success","message":"Event processed"}' if answer < 300 else \
                json.dumps({"message": f"scripted {answer}"}).encode()
            if name == "slack":
                payload = b"ok" if answer == 200 else b"rate_limited" if answer == 429 else b"internal_error"
            self.send_response(answer)
            if answer == 429:
                self.send_header("Retry-After", rec.retry_after)
            self.send_header("Content-Type", "text/plain" if name == "slack" else "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"{name}-receiver", daemon=True)
    thread.start()
    port = server.server_address[1]
    rec.url = {"pagerduty": f"http://127.0.0.1:{port}/v2/enqueue", "opsgenie": f"http://127.0.0.1:{port}/v2/alerts",
               "slack": f"http://127.0.0.1:{port}/services/T0AEP/B0OPS/{'x' * 24}"}.get(name, f"http://127.0.0.1:{port}/")
    try:
        yield rec
    finally:
        rec.released.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Receivers:
    pagerduty: Receiver
    opsgenie: Receiver
    slack: Receiver

    def all(self) -> list[Receiver]:
        return [self.pagerduty, self.opsgenie, self.slack]


@contextmanager
def notify_receivers() -> Iterator[Receivers]:
    """The three receivers; PagerDuty and OpsGenie answer 202, Slack 200, unless scripted."""
    with ExitStack() as stack:
        yield Receivers(stack.enter_context(receiver("pagerduty", 202)),
                        stack.enter_context(receiver("opsgenie", 202)),
                        stack.enter_context(receiver("slack", 200)))
