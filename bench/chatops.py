"""Acknowledgement latency of the chat front door under load, against a bare Bolt app.

Starts ``aep-ops chatops.serve`` as a real process (the test setup: tests/support/chat_service.py,
replies going to a local Slack Web API) and, as the floor, a bare Bolt app that only acks, served by
the same waitress with the same threads. Each round sends 20 signed slash commands at once (a
barrier releases 20 threads) and times each from send to the 200 received. Against aep-ops the
commands are real (``chatcheck.look``: each starts an aep-ops process in the worker pool) while
long runbooks already occupy workers (``demo.greet --pause`` on three environments, so three
locks). Rounds alternate between the two servers after one warm-up round each.

    .venv/bin/python bench/chatops.py [--rounds 10] [--concurrency 20]

Target: aep-ops p99 under 300 ms (Slack's limit is 3 s). Exit 0 when met, 1 when missed, 2 when
the bench could not run. Results go to bench/results/chatops-*.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aep_ops.testing.slack_api import SlackApi, send, slash_body  # noqa: E402
from tests.support.chat_service import SECRET, TEAM, chat_service  # noqa: E402

TARGET_P99 = 0.300
LONG_ENVS = ("dev", "staging", "local")
FLOOR = f"""
import sys
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.authorization import AuthorizeResult
from waitress import create_server
import logging
logging.getLogger("waitress").setLevel(logging.ERROR)
app = App(signing_secret={SECRET!r}, token_verification_enabled=False, process_before_response=False,
          authorize=lambda enterprise_id, team_id, logger: AuthorizeResult(enterprise_id=enterprise_id,
                                                                             team_id=team_id, bot_token="xoxb-x"))
@app.command("/ops")
def on_command(ack):
    ack(text="on it")
server = create_server(SlackRequestHandler(app), host="127.0.0.1", port=0, threads=8)
print(f"http://127.0.0.1:{{server.effective_port}}/slack/events", flush=True)
server.run()
"""


def burst(url: str, text: str, concurrency: int, tag: str) -> list[float]:
    """``concurrency`` commands released together; seconds from send to 200, each."""
    barrier = threading.Barrier(concurrency)
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        body = slash_body(text, team=TEAM, user=f"UBENCH{tag}{i:02d}")
        barrier.wait()
        started = time.perf_counter()
        status, answer = send(url, body, secret=SECRET, timeout=30)
        elapsed = time.perf_counter() - started
        with lock:
            (times if status == 200 and "on it" in answer else failures).append(elapsed if status == 200 else answer)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"bench: {len(failures)} command(s) not acknowledged: {failures[:3]}")
    return times


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    api = SlackApi()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR], stdout=subprocess.PIPE, text=True)
    samples: dict[str, list[float]] = {"aep-ops": [], "floor": []}
    try:
        floor_url = floor.stdout.readline().strip()  # type: ignore[union-attr]
        roles = {"viewer": [f"UBENCHA{i:02d}" for i in range(args.concurrency)], "operator": ["UOPER1"]}
        with tempfile.TemporaryDirectory(prefix="aep-chat-bench-") as tmp, \
                chat_service(Path(tmp), api, roles=roles, envs=("dev", "staging", "local", "prod"),
                             extra_top="  workers: 8\n  queue: 256\n") as svc:
            for env in LONG_ENVS:  # three long runs hold workers (and three locks) throughout
                svc.command(f"demo.greet --env {env} --name Bench --pause 600", user="UOPER1")
            api.wait_for(lambda a: sum(1 for m in a.texts("chat.postMessage") if m.startswith("run ")) >= 3, 60,
                         what="the three long runs to start")
            burst(svc.url, "chatcheck.look --env dev", args.concurrency, "A")  # warm-up
            burst(floor_url, "chatcheck.look --env dev", args.concurrency, "F")
            for _ in range(args.rounds):
                time.sleep(1.0)  # let the previous round's aep-ops processes start (they are the load)
                samples["aep-ops"] += burst(svc.url, "chatcheck.look --env dev", args.concurrency, "A")
                samples["floor"] += burst(floor_url, "chatcheck.look --env dev", args.concurrency, "F")
    finally:
        floor.terminate()
        api.close()
    report = {name: {"p50_ms": round(1000 * statistics.median(v), 1), "p99_ms": round(1000 * percentile(v, 99), 1),
                     "max_ms": round(1000 * max(v), 1), "n": len(v)} for name, v in samples.items()}
    ratio = report["aep-ops"]["p99_ms"] / max(report["floor"]["p99_ms"], 0.1)
    met = report["aep-ops"]["p99_ms"] < TARGET_P99 * 1000
    print(f"{'server':<8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'n':>5}")
    for name, row in report.items():
        print(f"{name:<8} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8} {row['n']:>5}")
    print(f"p99 aep-ops / floor: {ratio:.2f}x; target p99 < {TARGET_P99 * 1000:.0f} ms: {'met' if met else 'MISSED'}")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out / f"chatops-{stamp}.json").write_text(json.dumps({"report": report, "ratio_p99": ratio, "met": met,
                                                           "rounds": args.rounds,
                                                           "concurrency": args.concurrency}, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
