"""Heartbeat pings of real CLI runs against a real local HTTP server (healthchecks-style): start,
then success or fail, all with the run's rid; a dead or silent server never fails the run; the URL
is a secret (its token never appears in the output or the logs)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from aep_ops.metrics.heartbeat import rid
from aep_ops.testing.ports import free_port

TOKEN = "hc-token-5f0c9d2e7a"


class Pings:
    """A healthchecks stand-in on loopback that records each ping; ``silent`` makes it never answer."""

    def __init__(self, silent: bool = False) -> None:
        self.seen: list[dict] = []
        self.release = threading.Event()
        pings = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                parts = urllib.parse.urlsplit(self.path)
                pings.seen.append({"method": "POST", "path": parts.path,
                                   "query": dict(urllib.parse.parse_qsl(parts.query)),
                                   "body": self.rfile.read(length).decode()})
                if silent:
                    pings.release.wait(30)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/ping/{TOKEN}/{{runbook}}-{{env}}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def pings():
    server = Pings()
    yield server
    server.close()


def _run(cli, url: str, *args: str, rc: int = 0, extra: tuple[str, ...] = ()):
    done = cli("demo.greet", "--json", "--set", "metrics.heartbeat_url=env:AEP_TEST_HEARTBEAT_URL", *extra, *args,
               env={"AEP_TEST_HEARTBEAT_URL": url}, check_rc=rc)
    return json.loads(done.stdout), done


def _no_token_anywhere(done, state_dir) -> None:
    assert TOKEN not in done.stdout + done.stderr
    for path in state_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_start_then_success_with_the_run_id(cli, pings, state_dir):
    result, done = _run(cli, pings.url)
    assert result["status"] == "succeeded"
    run_id = result["run_id"]
    assert [(p["path"], p["query"]) for p in pings.seen] == [
        (f"/ping/{TOKEN}/demo-greet-local/start", {"rid": rid(run_id)}),
        (f"/ping/{TOKEN}/demo-greet-local", {"rid": rid(run_id)})]
    assert pings.seen[0]["body"] == f"aep-ops demo.greet on local: run {run_id} start"
    assert pings.seen[1]["body"] == f"aep-ops demo.greet on local: run {run_id} success"
    _no_token_anywhere(done, state_dir)


def test_a_failing_run_pings_fail(cli, pings, state_dir):
    (state_dir / "demo").parent.mkdir(parents=True, exist_ok=True)
    (state_dir / "demo").write_text("a file where the step wants a directory")
    result, done = _run(cli, pings.url, rc=1)
    assert result["status"] == "failed"
    assert [p["path"] for p in pings.seen] == [f"/ping/{TOKEN}/demo-greet-local/start",
                                               f"/ping/{TOKEN}/demo-greet-local/fail"]
    assert {p["query"]["rid"] for p in pings.seen} == {rid(result["run_id"])}
    assert pings.seen[1]["body"].startswith(f"aep-ops demo.greet on local: run {result['run_id']} fail\nfailed:"
                                            " step ensure_demo_dir: FileExistsError")
    _no_token_anywhere(done, state_dir)


def test_a_resumed_run_pings_with_the_same_rid(cli, pings, state_dir):
    (state_dir / "demo").parent.mkdir(parents=True, exist_ok=True)
    (state_dir / "demo").write_text("in the way")
    failed, _ = _run(cli, pings.url, rc=1)
    (state_dir / "demo").unlink()
    resumed, _ = _run(cli, pings.url, "--resume", failed["run_id"])
    assert resumed["status"] == "succeeded"
    assert [p["path"].rsplit("/", 1)[-1] for p in pings.seen] == ["start", "fail", "start", "demo-greet-local"]
    assert {p["query"]["rid"] for p in pings.seen} == {rid(failed["run_id"])}


def test_a_dead_url_does_not_fail_the_run(cli, state_dir):
    dead = f"http://127.0.0.1:{free_port()}/ping/{TOKEN}"  # reserved for this test, nothing listens on it
    result, done = _run(cli, dead)
    assert result["status"] == "succeeded"
    warnings = [json.loads(line) for line in done.stderr.splitlines() if '"heartbeat.failed"' in line]
    assert [(w["ping"], w["level"]) for w in warnings] == [("start", "warning"), ("success", "warning")]
    assert all("ConnectionRefusedError" in w["error"] for w in warnings), warnings
    _no_token_anywhere(done, state_dir)


def test_a_silent_server_costs_the_timeout_not_the_run(cli, state_dir):
    silent = Pings(silent=True)
    try:
        result, done = _run(cli, silent.url, extra=("--set", "metrics.heartbeat_timeout_seconds=1"))
        deadline = time.monotonic() + 30
        while len(silent.seen) < 2 and time.monotonic() < deadline:  # the server may read a request late
            time.sleep(0.02)
    finally:
        silent.close()
    assert result["status"] == "succeeded"
    warnings = [json.loads(line) for line in done.stderr.splitlines() if '"heartbeat.failed"' in line]
    assert [w["ping"] for w in warnings] == ["start", "success"]
    assert sorted(p["path"].rsplit("/", 1)[-1] for p in silent.seen) == ["demo-greet-local", "start"], \
        "both pings reached the server, which never answered"


def test_only_the_listed_runbooks_ping(cli, pings):
    result, _ = _run(cli, pings.url, extra=("--set", "metrics.heartbeat_runbooks=backup.run,dr.drill"))
    assert result["status"] == "succeeded" and pings.seen == []


def test_a_dry_run_does_not_ping(cli, pings):
    done = cli("demo.greet", "--dry-run", "--set", "metrics.heartbeat_url=env:AEP_TEST_HEARTBEAT_URL",
               env={"AEP_TEST_HEARTBEAT_URL": pings.url}, check_rc=0)
    assert "plan" in done.stdout and pings.seen == []
