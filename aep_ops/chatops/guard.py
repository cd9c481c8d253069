"""Request security in front of Bolt, as WSGI middleware: nothing unverified reaches a listener.

In order, each refusal logged and answered at once: a path other than the events endpoint (404),
a body over the limit (413, not read), a missing or malformed timestamp (401), a timestamp more
than 5 minutes off (401), a signature that is not the HMAC of ``v0:ts:body`` under the signing
secret (401, slack_sdk's constant-time verifier), a request seen before (409: the replay store is
in the journal database, so replicas share it), then the sender's rate limit (answered in chat)."""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import Any, Callable, Iterable

from aep_ops.base.log import get_logger

log = get_logger(__name__)
WINDOW_SECONDS = 300
EVENTS_PATH = "/slack/events"


class Guard:
    def __init__(self, inner: Callable, *, signing_secret: str, store: Any, max_body: int,
                 rate_limited: Callable[[bytes], str | None]) -> None:
        from slack_sdk.signature import SignatureVerifier

        self.inner = inner
        self.verifier = SignatureVerifier(signing_secret)
        self.store = store
        self.max_body = max_body
        self.rate_limited = rate_limited

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if path == "/healthz" and method in ("GET", "HEAD"):
            return _answer(start_response, 200, "ok")
        if path != EVENTS_PATH:
            return _answer(start_response, 404, "not found")
        if method != "POST":
            return _answer(start_response, 405, "POST only")
        body = self._body(environ)
        if body is None:
            return self._refuse(environ, start_response, 413, f"body over {self.max_body} bytes")
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            return self._refuse(environ, start_response, 401, "missing or malformed X-Slack-Request-Timestamp")
        if abs(time.time() - int(timestamp)) > WINDOW_SECONDS:
            return self._refuse(environ, start_response, 401, "timestamp more than 5 minutes off")
        if not signature or not self.verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            return self._refuse(environ, start_response, 401, "invalid signature")
        if not self.store.first_time(hashlib.sha256(signature.encode()).hexdigest()):
            return self._refuse(environ, start_response, 409, "replayed request")
        limited = self.rate_limited(body)
        if limited:
            log.warning("chatops.rate_limited", reason=limited)
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps({"response_type": "ephemeral", "text": limited}).encode()]
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.inner(environ, start_response)

    def _body(self, environ: dict) -> bytes | None:
        """The body, or None when it is over the limit (a declared length over it is not read)."""
        try:
            declared = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return None
        if declared > self.max_body:
            return None
        stream = environ["wsgi.input"]
        body = stream.read(declared) if declared >= 0 else stream.read(self.max_body + 1)
        return None if len(body) > self.max_body else body

    def _refuse(self, environ: dict, start_response: Callable, status: int, why: str) -> list[bytes]:
        log.warning("chatops.refused", status=status, reason=why, remote=environ.get("REMOTE_ADDR"))
        return _answer(start_response, status, why)


def _answer(start_response: Callable, status: int, text: str) -> list[bytes]:
    names = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
             413: "Payload Too Large"}
    start_response(f"{status} {names[status]}", [("Content-Type", "text/plain; charset=utf-8")])
    return [text.encode()]
