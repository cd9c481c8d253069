"""A real HTTP receiver for incoming-webhook notices (Slack's format): it records every POST body and
answers with the status the test chose (200, 429 with Retry-After, 500)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.answers: list[int] = []  # statuses to give, in order; then 200
        self.lock = threading.Lock()
        self.url = ""

    def texts(self) -> list[str]:
        with self.lock:
            return [b.get("text", "") for b in self.bodies if isinstance(b, dict)]


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                try:
                    receiver.bodies.append(json.loads(body))
                except ValueError:
                    receiver.bodies.append(body.decode("utf-8", "replace"))
                status = receiver.answers.pop(0) if receiver.answers else 200
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "0")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
