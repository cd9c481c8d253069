"""The chat front door takes the same lock as every other: a chat run while a CLI run holds it
answers "locked by run ... (pid, host, since)", a CLI run while a chat run holds it exits 3
naming the chat's run, and stopping the service interrupts its runs cleanly (resumable). A canary
secret that a runbook writes into its plan, progress, summary and error reaches no chat message."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess

import pytest

from aep_ops.testing.slack_api import SlackApi
from tests.conftest import REPO
from tests.support.chat_service import CANARY, TEAM, chat_service
from tests.support.processes import spawned, step_status, wait_applying
from tests.support.secret_scan import BY_KIND, leaks


@pytest.fixture
def api():
    server = SlackApi()
    yield server
    server.close()


def result_of(api, user: str, text: str, timeout: float = 90) -> str:
    def seen(a):
        return next((m for m in a.thread(a.root(f"<@{user}> asked: `/ops {text}`")) if m.startswith("*")), None)
    return api.wait_for(seen, timeout, what=f"the result of {text}")


def started_run(api, user: str, text: str) -> str:
    """The run id the chat's progress message names (posted once the run holds its lock)."""
    def seen(a):
        return next((m.split()[1] for m in a.thread(a.root(f"<@{user}> asked: `/ops {text}`"))
                     if m.startswith("run ")), None)
    return api.wait_for(seen, 60, what=f"the start of {text}")


def test_chat_and_cli_race_for_one_lock(tmp_path, api):
    with chat_service(tmp_path / "chat", api) as svc:
        with spawned(svc.aep_ops("demo.greet", "--env", "dev", "--name", "Cli", "--pause", "60"),
                     log=tmp_path / "cli.log", env=svc.env, cwd=REPO) as cli:
            cli_run = wait_applying(svc.state_dir, "ensure_greeting", proc=cli)
            svc.command("demo.greet --env dev --name Chat", user="UOPER1")
            answer = result_of(api, "UOPER1", "demo.greet --env dev --name Chat")
            assert answer.startswith("*demo.greet*: locked by another run (exit 3)"), answer
            held = re.search(r"locked by run (\S+) \(pid (\d+) on (\S+), since (\S+)\)", answer)
            assert held, answer
            assert held.group(1, 2, 3) == (cli_run, str(cli.pid), socket.gethostname())
            cli.send_signal(signal.SIGTERM)
            assert cli.wait(timeout=60) == 1

        svc.command("demo.greet --env dev --name Chat2 --pause 6", user="UOPER2")
        chat_run = started_run(api, "UOPER2", "demo.greet --env dev --name Chat2 --pause 6")
        api.wait_for(lambda a: step_status(svc.state_dir, chat_run, "ensure_greeting") == "running", 60)
        done = subprocess.run(svc.aep_ops("demo.greet", "--env", "dev", "--name", "Cli2"), env=svc.env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, done.stderr
        assert f"locked by run {chat_run} (pid " in done.stderr

        svc.proc.send_signal(signal.SIGTERM)  # the service stops: its run is interrupted, not abandoned
        assert svc.proc.wait(timeout=120) == 0
    shown = subprocess.run(svc.aep_ops("runs.show", chat_run), env=svc.env, cwd=REPO, capture_output=True, text=True,
                           timeout=60)
    assert f"run {chat_run}: demo.greet on dev, interrupted" in shown.stdout, shown.stdout
    assert f"by slack:{TEAM}/UOPER2 on " in shown.stdout
    resumed = subprocess.run(svc.aep_ops("demo.greet", "--env", "dev", "--resume", chat_run), env=svc.env, cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert (svc.state_dir / "demo" / "greeting.txt").read_text() == "Hello, Chat2!\n"


def test_no_chat_message_carries_the_canary(tmp_path, api):
    with chat_service(tmp_path / "chat", api) as svc:
        results = []
        for text in ("chatcheck.leak --env dev", "chatcheck.leak --env dev --fail", "chatcheck.leak --env dev --dry-run"):
            svc.command(text, user="UOPER1")  # one after the other: runs of one runbook share its lock
            results.append(result_of(api, "UOPER1", text))
        succeeded, failed, planned = results
        svc.command("runs --env dev", user="UOPER1")
        api.wait_for(lambda a: any("chatcheck.leak" in w and "failed" in w for w in a.whispers_to("UOPER1")), 60)
        run_id = re.search(r"run (\S+)", succeeded.split("```")[1]).group(1)
        svc.command(f"status {run_id}", user="UOPER1")
        api.wait_for(lambda a: any(f"run {run_id}:" in w for w in a.whispers_to("UOPER1")), 60)
    assert succeeded.startswith("*chatcheck.leak*: done (exit 0)") and "dsn: postgresql://app:****@db/aep" in succeeded
    assert failed.startswith("*chatcheck.leak*: failed (exit 1)") and "login refused for app:****" in failed
    assert planned.startswith("*chatcheck.leak*: done (exit 0)") and "log in with ****" in planned
    every = {f"{i} {c.method}": json.dumps(c.args, ensure_ascii=False) + " " + json.dumps(c.args)
             for i, c in enumerate(api.calls)}
    assert len(every) >= 12
    found = leaks(every, (BY_KIND["env"],))
    assert not found, "the canary reached chat:\n" + "\n".join(found)
    assert CANARY not in (tmp_path / "chat" / "chatops.stderr").read_text()
