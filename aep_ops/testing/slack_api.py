"""A local Slack Web API for tests: a real HTTP server that answers the methods the chat front
door calls (chat.postMessage, chat.update, chat.postEphemeral, usergroups.users.list, auth.test)
and records every call, so a test reads exactly what would have been shown in Slack. Slack's
own API cannot be reached from here; this is the one stand-in, and it speaks real HTTP to the
real slack_sdk WebClient. Also: signing and sending requests as Slack does."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    token: str
    ts: str | None = None  # the ts given to a posted message


class SlackApi:
    """``groups``: user group id -> member user ids; ``failing_groups``: ids answered with an error."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.groups: dict[str, list[str]] = {}
        self.failing_groups: set[str] = set()
        self._cond = threading.Condition()
        self._ts = itertools.count(1)
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                args = json.loads(raw) if "json" in (self.headers.get("Content-Type") or "") else \
                    {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                self._answer(api.answer(self.path, args, self.headers.get("Authorization") or ""))

            def do_GET(self) -> None:  # noqa: N802
                path, _, query = self.path.partition("?")
                args = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
                self._answer(api.answer(path, args, self.headers.get("Authorization") or ""))

            def _answer(self, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, path: str, args: dict[str, Any], auth: str) -> dict[str, Any]:
        method = path.rsplit("/", 1)[-1]
        body = self._body(method, args)
        with self._cond:
            self.calls.append(Call(method, args, auth.removeprefix("Bearer "), body.get("ts")))
            self._cond.notify_all()
        return body

    def _body(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "usergroups.users.list":
            group = args.get("usergroup", "")
            if group in self.failing_groups or group not in self.groups:
                return {"ok": False, "error": "no_such_subteam" if group not in self.failing_groups else "fatal_error"}
            return {"ok": True, "users": list(self.groups[group])}
        if method in ("chat.postMessage", "chat.update"):
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts") or f"{next(self._ts)}.000100"}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{next(self._ts)}.000200"}
        return {"ok": True}

    # --- what a test reads ---

    def texts(self, method: str | None = None) -> list[str]:
        """Every text shown (messages, edits, whispers, block texts and button values)."""
        with self._cond:
            calls = [c for c in self.calls if method is None or c.method == method]
        out = []
        for call in calls:
            out.append(str(call.args.get("text") or ""))
            blocks = call.args.get("blocks")
            if blocks:
                out.append(blocks if isinstance(blocks, str) else json.dumps(blocks))
        return out

    def root(self, starts: str) -> str | None:
        """The ts of the first message that starts with ``starts`` (a request's root message)."""
        with self._cond:
            return next((c.ts for c in self.calls if c.method == "chat.postMessage"
                         and str(c.args.get("text") or "").startswith(starts)), None)

    def thread(self, ts: str | None) -> list[str]:
        """Texts posted in the thread under ``ts``."""
        with self._cond:
            return [str(c.args.get("text") or "") for c in self.calls
                    if ts and c.method == "chat.postMessage" and c.args.get("thread_ts") == ts]

    def whispers_to(self, user: str) -> list[str]:
        with self._cond:
            return [str(c.args.get("text")) for c in self.calls
                    if c.method == "chat.postEphemeral" and c.args.get("user") == user]

    def wait_for(self, predicate: Callable[["SlackApi"], Any], timeout: float = 60, what: str = "") -> Any:
        """The predicate's first truthy answer; fails the test with what was seen when time is up."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = predicate(self)
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    shown = "\n".join(f"{c.method}: {c.args.get('text')!r}" for c in self.calls[-15:])
                    raise AssertionError(f"no {what or 'expected call'} within {timeout:g} s; last calls:\n{shown}")
                self._cond.wait(min(left, 0.5))

    def wait_text(self, needle: str, timeout: float = 60, method: str | None = None) -> str:
        return self.wait_for(lambda api: next((t for t in api.texts(method) if needle in t), None),
                             timeout, what=repr(needle))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sign(secret: str, body: bytes, timestamp: str) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def slash_body(text: str, *, team: str, user: str, channel: str = "C0OPS", command: str = "/ops") -> bytes:
    return urllib.parse.urlencode({"token": "legacy-unused", "team_id": team, "team_domain": "aep",
                                   "channel_id": channel, "channel_name": "ops", "user_id": user,
                                   "user_name": "someone", "command": command, "text": text,
                                   "response_url": "http://127.0.0.1:9/unused", "trigger_id": _trigger()}).encode()


def button_body(action_id: str, value: str, *, team: str, user: str, channel: str = "C0OPS") -> bytes:
    payload = {"type": "block_actions", "team": {"id": team}, "user": {"id": user, "team_id": team},
               "channel": {"id": channel}, "api_app_id": "A0OPS", "trigger_id": _trigger(),
               "container": {"type": "message", "message_ts": "1.000100"},
               "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value,
                            "action_ts": str(time.time())}]}
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


def _trigger() -> str:
    """Slack gives every request its own trigger id: two commands are never the same bytes."""
    import uuid

    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:12]}"


def send(url: str, body: bytes, *, secret: str | None, timestamp: str | None = None,
         signature: str | None = None, timeout: float = 10) -> tuple[int, str]:
    """POST ``body`` as Slack does (signed with ``secret`` unless ``signature`` is given); (status, text)."""
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp}
    signature = signature if signature is not None else (sign(secret, body, timestamp) if secret else "")
    if signature:
        headers["X-Slack-Signature"] = signature
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
