"""A fault-injecting HTTP proxy in front of the moto server, for tests of S3 uploads.

Why: moto accepts a body that does not match its checksum and stores whatever checksum header the
client sent, so the verification path of an uploader can only be exercised with faults injected
between client and moto: a 500, a connection dropped mid-body, a corrupted body (refused with
BadDigest as real S3 would, or stored with a checksum rewritten to match it), a request held at a
proven point (stored in moto, answer not yet relayed) while the test kills the client.

What botocore 1.44 sends over plain http:// (checked through this proxy, see the tests): bodies with
Content-Length, never chunked; ``Expect: 100-continue`` on every PutObject and UploadPart, even of 100
bytes (answered by http.server before the body is read); a hex ``x-amz-content-sha256`` of the body (payload
always signed over http); ``x-amz-checksum-crc32`` by default or ``-sha256`` with ChecksumAlgorithm,
in a header: aws-chunked with trailing checksums is used over https only. Chunked request bodies
are relayed raw (framing and trailers kept) but cannot be corrupted.

Each rule matches with a predicate on (method, path, query, headers) and fires for its next
``times`` matching requests; the first rule left that matches a request takes it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from aep_ops.testing.ports import free_port

Predicate = Callable[[str, str, dict, Any], bool]
# Not relayed either way; Content-Length and Transfer-Encoding are set anew from the body relayed.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade",
              "expect", "content-length", "transfer-encoding"}
ERROR_XML = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
             '<RequestId>FAULTPROXY{n}</RequestId><HostId>s3-fault-proxy</HostId></Error>')


def match(method: str | None = None, key_contains: str | None = None, query_has: str | Iterable[str] | None = None,
          query_lacks: str | Iterable[str] | None = None) -> Predicate:
    """A predicate on the request line: ``match("PUT", query_has="partNumber")`` is UploadPart,
    ``match("PUT", key_contains="api.log", query_lacks="partNumber")`` a PutObject of that key."""
    has = [query_has] if isinstance(query_has, str) else list(query_has or [])
    lacks = [query_lacks] if isinstance(query_lacks, str) else list(query_lacks or [])

    def predicate(m: str, path: str, query: dict, headers: Any) -> bool:
        return ((method is None or m == method.upper()) and (key_contains is None or key_contains in path)
                and all(q in query for q in has) and not any(q in query for q in lacks))
    return predicate


class Rule:
    """One fault: ``fired`` counts the requests it took; a hold rule is let go with ``release()``."""

    def __init__(self, action: str, predicate: Predicate, times: int, **options: Any) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        self.action, self.predicate, self.times, self.options = action, predicate, times, options
        self.fired = 0
        self._cond = threading.Condition()
        self._holding = 0  # requests held right now
        self._generation = 0  # bumped by release(): every request held before it goes on
        self._closed = False  # proxy stopped or rule cleared: nothing is held any more

    @property
    def remaining(self) -> int:
        return self.times - self.fired

    def release(self) -> None:
        """Let every request held by this rule go on (a later match is held again)."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait_held(self, timeout: float = 10.0) -> None:
        """Return once a request is held by this rule; TimeoutError if none is within ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._holding > 0, timeout):
                raise TimeoutError(f"no request held by the {self.action} rule within {timeout:g}s"
                                   f" (fired {self.fired} times)")

    def _hold(self) -> None:
        with self._cond:
            generation = self._generation
            self._holding += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._generation != generation or self._closed)
            self._holding -= 1

    def _close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __repr__(self) -> str:
        return f"Rule({self.action}, fired={self.fired}/{self.times}, {self.options})"


class S3FaultProxy:
    """http://127.0.0.1:PORT relaying to ``upstream_url`` (moto), with fault rules added at runtime."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be http://host:port, got {upstream_url}")
        self.upstream = (parts.hostname, parts.port or 80)
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query) of every request seen
        self.request_headers: list[dict[str, str]] = []  # their headers, same order (lower-case names)
        self.errors: list[str] = []  # what went wrong inside the proxy (upstream down, unverifiable checksum)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3FaultProxy:
        if self._server is not None:
            raise RuntimeError("S3FaultProxy already started")
        self.port = free_port()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"s3-fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, let every held request go and close every client connection (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        self.clear()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> S3FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def add_rule(self, action: str, predicate: Predicate, times: int = 1, **options: Any) -> Rule:
        rule = Rule(action, predicate, times, **options)
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail_with_500(self, predicate: Predicate, times: int = 1) -> Rule:
        """Answer 500 InternalError (body read, nothing forwarded): S3's retryable error."""
        return self.add_rule("fail", predicate, times)

    def drop_connection(self, predicate: Predicate, times: int = 1, after_bytes: int | None = None) -> Rule:
        """Read ``after_bytes`` of the body (half of it by default), then reset the connection, no answer."""
        return self.add_rule("drop", predicate, times, after_bytes=after_bytes)

    def corrupt_body(self, predicate: Predicate, times: int = 1, fix_checksum: bool = False) -> Rule:
        """Flip the middle byte of the body. ``fix_checksum``: rewrite the checksum headers to match
        it (corrupted before the client hashed it); else answer as S3 does to a body that does not
        match its checksum (400 BadDigest, nothing forwarded)."""
        return self.add_rule("corrupt", predicate, times, fix_checksum=fix_checksum)

    def hold(self, predicate: Predicate, times: int = 1, when: str = "before") -> Rule:
        """Block the request before forwarding it, or ``when="after"`` upstream answered and before
        the answer is relayed, until ``rule.release()`` (or ``stop()``/``clear()``)."""
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', got {when!r}")
        return self.add_rule("hold", predicate, times, when=when)

    def clear(self) -> None:
        """Remove every rule, letting requests held by them go."""
        with self._lock:
            rules, self._rules = self._rules, []
        for rule in rules:
            rule._close()

    def _take(self, method: str, path: str, query: dict, headers: Any) -> Rule | None:
        with self._lock:
            self.requests.append((method, path, query))
            self.request_headers.append({k.lower(): v for k, v in headers.items()})
            for rule in self._rules:
                if rule.remaining > 0 and rule.predicate(method, path, query, headers):
                    rule.fired += 1
                    return rule
        return None

    def _forward(self, method: str, target: str, headers: list[tuple[str, str]],
                 body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=120)
        try:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body or None)
            response = conn.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            conn.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    proxy: S3FaultProxy

    def __init__(self, *args: Any) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(*args)

    def close_connections(self) -> None:
        with self.connections_lock:
            for sock in self.connections:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        import traceback

        self.proxy.errors.append(traceback.format_exc(limit=3))  # a traceback on stderr helps no test


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive as S3, and 100 Continue answered by parse_request
    timeout = 120
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def relay(self) -> None:
        proxy = self.server.proxy
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        rule = proxy._take(self.command, unquote(url.path), query, self.headers)
        action, options = (rule.action, rule.options) if rule else ("", {})
        if action == "drop":
            return self._drop(options["after_bytes"])
        body, chunked = self._read_body()
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if action == "fail":
            return self._error(500, "InternalError", "We encountered an internal error. Please try again.")
        if action == "corrupt":
            if chunked:
                return self._proxy_error("cannot corrupt a chunked body (botocore chunks over https only)")
            if not body:
                return self._proxy_error("cannot corrupt an empty body")
            body = corrupt(body)
            problem = check_or_fix(headers, body, fix=options["fix_checksum"])
            if problem is not None and problem[1] == "FaultProxyError":
                return self._proxy_error(problem[2])
            if problem is not None:
                return self._error(*problem)
        if "content-length" in self.headers or body:
            headers.append(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(len(body))))
        if action == "hold" and options["when"] == "before":
            rule._hold()
        try:
            status, reason, answer_headers, answer = proxy._forward(self.command, self.path, headers, body)
        except (OSError, http.client.HTTPException) as exc:
            return self._proxy_error(f"upstream {proxy.upstream}: {exc}", status=502)
        if action == "hold" and options["when"] == "after":
            rule._hold()
        self._answer(status, reason, answer_headers, answer)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_OPTIONS = do_PATCH = relay

    def _read_body(self) -> tuple[bytes, bool]:
        """The body as received, and whether it is chunked (relayed raw: framing and trailers kept)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = bytearray()
            while True:
                line = self.rfile.readline(65537)
                raw += line
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (trailer := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                        raw += trailer
                    raw += b"\r\n"
                    return bytes(raw), True
                raw += self.rfile.read(size) + self.rfile.readline(65537)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0)), False

    def _drop(self, after_bytes: int | None) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length // 2 if after_bytes is None else after_bytes, length))
        self.close_connection = True
        # SO_LINGER 0: close sends a reset, as a connection cut mid-body, not an orderly FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the makefile reference would otherwise keep the socket open
        self.connection.close()

    def _answer(self, status: int, reason: str | None, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            self.send_response_only(status, reason)
            length = str(len(body))
            for name, value in headers:
                if name.lower() == "content-length" and (self.command == "HEAD" or status in (204, 304)):
                    length = value  # HEAD: the object's size, with no body
                elif name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", length)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the client went away (killed while held): nothing to relay to
            self.close_connection = True

    def _error(self, status: int, code: str, message: str) -> None:
        n = len(self.server.proxy.requests)
        body = ERROR_XML.format(code=code, message=message, n=n).encode()
        self._answer(status, None, [("Content-Type", "application/xml"), ("x-amz-request-id", f"FAULTPROXY{n}")],
                     body)

    def _proxy_error(self, message: str, status: int = 500) -> None:
        self.server.proxy.errors.append(message)
        self._error(status, "FaultProxyError", message)


def corrupt(body: bytes) -> bytes:
    """``body`` with its middle byte flipped."""
    if not body:
        raise ValueError("an empty body cannot be corrupted")
    damaged = bytearray(body)
    damaged[len(body) // 2] ^= 0xFF
    return bytes(damaged)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


# S3's checksum headers this proxy can compute, and the name S3 gives each in BadDigest.
DIGESTS: dict[str, tuple[str, Callable[[bytes], str]]] = {
    "content-md5": ("Content-MD5", lambda b: _b64(hashlib.md5(b).digest())),
    "x-amz-checksum-sha256": ("SHA256", lambda b: _b64(hashlib.sha256(b).digest())),
    "x-amz-checksum-sha1": ("SHA1", lambda b: _b64(hashlib.sha1(b).digest())),
    "x-amz-checksum-crc32": ("CRC32", lambda b: _b64(struct.pack(">I", zlib.crc32(b)))),
}

NOT_DIGESTS = {"x-amz-checksum-algorithm", "x-amz-checksum-type", "x-amz-checksum-mode"}


def check_or_fix(headers: list[tuple[str, str]], body: bytes, fix: bool) -> tuple[int, str, str] | None:
    """Rewrite (``fix``) the checksum headers to match ``body`` in place, or the (status, code,
    message) S3 answers when one does not match. A checksum this proxy cannot compute is an error."""
    for i, (name, value) in enumerate(headers):
        lname = name.lower()
        if lname in DIGESTS:
            label, compute = DIGESTS[lname]
            actual = compute(body)
            if fix:
                headers[i] = (name, actual)
            elif value != actual:
                what = "Content-MD5 you specified did not match what we received" if label == "Content-MD5" \
                    else f"{label} you specified did not match the calculated checksum"
                return 400, "BadDigest", f"The {what}."
        elif lname.startswith("x-amz-checksum-") and lname not in NOT_DIGESTS:
            return 500, "FaultProxyError", f"the proxy cannot compute {name} (only {', '.join(DIGESTS)})"
    for i, (name, value) in enumerate(headers):  # S3 checks the signed payload hash too
        if name.lower() == "x-amz-content-sha256" and len(value) == 64:
            actual = hashlib.sha256(body).hexdigest()
            if fix:
                headers[i] = (name, actual)
            elif value != actual:
                return 400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not " \
                    "match what was computed."
    return None
