"""Two-person approval of production changes from chat, end to end: the chat service as a real
process, replies read from the local Slack Web API, the runs carried out by aep-ops itself.

A request waits in the journal as "awaiting approval"; its requester cannot approve it; a second
operator's approval runs it exactly once; a second approval is a no-op; an expired request cannot
be approved; an approval covers only the arguments it was shown (at the button, and again when the
run starts); a denial settles it. ``runs.show`` says who asked and who approved."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.chat_service import TEAM, chat_service

GREETING = "demo/greeting.txt"


@pytest.fixture(scope="module")
def service(tmp_path_factory, slack_api):
    with chat_service(tmp_path_factory.mktemp("chat-approval"), slack_api) as svc:
        yield svc


def request(service, slack_api, user: str, text: str) -> tuple[str, str]:
    """Send a production request; (run id, the Approve button's value) once it waits."""
    assert service.command(text, user=user)[0] == 200
    root = slack_api.wait_for(lambda a: a.root(f"<@{user}> asked: `/ops {text}`"), 60, what=f"the request {text}")
    message = slack_api.wait_for(lambda a: next((c for c in a.calls if c.args.get("thread_ts") == root and c.args.get("blocks")),
                                          None), 60, what="the approval request")
    blocks = message.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    value = blocks[1]["elements"][0]["value"]
    return value.split(":")[0], value


def journal(service, sql: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(service.state_dir / "journal.sqlite3") as db:
        return db.execute(sql, args).fetchall()


def run_status(service, run_id: str) -> str:
    return journal(service, "SELECT status FROM runs WHERE id = ?", (run_id,))[0][0]


def runs_show(service, run_id: str) -> str:
    env = {**os.environ, "AEP_OPS_STATE_DIR": str(service.state_dir), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(Path(sys.executable).parent / "inv"), "runs.show", run_id], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def whisper(slack_api, user: str, needle: str) -> str:
    return slack_api.wait_for(lambda a: next((w for w in a.whispers_to(user) if needle in w), None), 60, what=needle)


def test_request_self_approval_second_person_then_once_only(service, slack_api):
    run_id, button = request(service, slack_api, "UOPER1", "demo.greet --env prod --name Ada")
    assert run_status(service, run_id) == "awaiting_approval"
    shown = runs_show(service, run_id)
    assert f"requested by slack:{TEAM}/UOPER1 (slack)" in shown and "approval pending" in shown

    service.command(f"approve {run_id}", user="UOPER1")
    assert whisper(slack_api, "UOPER1", "second person") == \
        f"run {run_id} was requested by slack:{TEAM}/UOPER1: a second person must approve it"
    service.click("ops_approve", button, user="UVIEW")
    assert whisper(slack_api, "UVIEW", "denied").startswith(f"denied: slack:{TEAM}/UVIEW is viewer on prod;")
    time.sleep(1)
    assert run_status(service, run_id) == "awaiting_approval"
    assert not (service.state_dir / GREETING).exists()

    service.click("ops_approve", button, user="UOPER2")
    slack_api.wait_for(lambda a: any(m.startswith("*demo.greet*: done (exit 0)") and run_id in m
                               for m in a.texts("chat.postMessage")), 90, what="the approved run's result")
    assert (service.state_dir / GREETING).read_text() == "Hello, Ada!\n"
    assert run_status(service, run_id) == "succeeded"
    shown = runs_show(service, run_id)
    assert f"by slack:{TEAM}/UOPER1 on " in shown  # the requester is the run's actor
    assert f"approval executed by slack:{TEAM}/UOPER2" in shown

    service.command(f"approve {run_id}", user="UADMIN")
    assert whisper(slack_api, "UADMIN", f"run {run_id} is already") .startswith(
        f"run {run_id} is already executed by slack:{TEAM}/UOPER2")
    time.sleep(2)
    assert journal(service, "SELECT attempts FROM runs WHERE id = ?", (run_id,)) == [(1,)]
    changed = [json.loads(line) for line in (service.state_dir / "logs" / "audit.jsonl").read_text().splitlines()]
    applied = [r for r in changed if r["action"].startswith("demo.greet:") and r["run_id"] == run_id]
    assert len(applied) == 3, applied  # three steps, each changed once: the run executed exactly once
    approvals = [r for r in changed if r["action"] == "chatops.approve" and r["args"].get("run_id") == run_id]
    assert [(r["actor"], r["result"].split(":")[0]) for r in approvals] == [
        (f"slack:{TEAM}/UOPER1", "refused"), (f"slack:{TEAM}/UOPER2", "approved the request of slack"),
        (f"slack:{TEAM}/UADMIN", "refused")]


def test_an_expired_request_cannot_be_approved_and_is_settled(service, slack_api):
    run_id, button = request(service, slack_api, "UOPER1", "demo.greet --env prod --name Late")
    journal(service, "UPDATE run_approvals SET expires_at = '2000-01-01T00:00:00.000+00:00' WHERE run_id = ?",
            (run_id,))  # the clock moved on past the approval window (15 minutes by default)
    service.click("ops_approve", button, user="UOPER2")
    assert "expired" in whisper(slack_api, "UOPER2", f"run {run_id}")
    assert run_status(service, run_id) == "refused"
    assert journal(service, "SELECT error FROM runs WHERE id = ?", (run_id,))[0][0].startswith("no approval before")
    greeting = service.state_dir / GREETING
    assert not greeting.exists() or "Late" not in greeting.read_text()


def test_an_approval_covers_only_the_arguments_it_was_shown(service, slack_api):
    run_a, button_a = request(service, slack_api, "UOPER1", "demo.greet --env prod --name Bea")
    run_b, button_b = request(service, slack_api, "UOPER1", "demo.greet --env prod --name Cal")
    stale = f"{run_b}:{button_a.split(':')[1]}"  # run B's id with the arguments shown for A
    service.click("ops_approve", stale, user="UOPER2")
    assert whisper(slack_api, "UOPER2", f"arguments of run {run_b}") == \
        f"the arguments of run {run_b} are not the ones shown for approval; ask again"
    assert run_status(service, run_b) == "awaiting_approval"

    # Approved for --name Bea; started by hand with other arguments: the engine refuses (exit 4).
    journal(service, "UPDATE run_approvals SET state = 'approved', decided_by = 'slack:T0AEP/UOPER2'"
                     " WHERE run_id = ?", (run_a,))
    env = {**os.environ, "AEP_OPS_STATE_DIR": str(service.state_dir), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
           "PYTHONPATH": str(REPO), "AEP_OPS_APPROVED_RUN": run_a}
    done = subprocess.run([str(Path(sys.executable).parent / "aep-ops"), "demo.greet", "--env", "prod", "--name", "Eve"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4, done.stderr
    assert f"run {run_a}: these arguments are not the approved ones" in done.stderr
    assert run_status(service, run_a) == "awaiting_approval"
    done = subprocess.run([str(Path(sys.executable).parent / "aep-ops"), "demo.greet", "--env", "prod", "--name", "Bea"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert run_status(service, run_a) == "succeeded"
    assert (service.state_dir / GREETING).read_text() == "Hello, Bea!\n"


def test_a_denied_request_is_settled_and_cannot_be_approved(service, slack_api):
    run_id, button = request(service, slack_api, "UOPER1", "demo.greet --env prod --name Dan")
    service.click("ops_deny", run_id, user="UOPER2")
    slack_api.wait_for(lambda a: any(m == f"<@UOPER2> denied run {run_id}" for m in a.texts("chat.postMessage")), 60)
    assert run_status(service, run_id) == "refused"
    service.click("ops_approve", button, user="UADMIN")
    assert whisper(slack_api, "UADMIN", f"run {run_id} is already denied").startswith(
        f"run {run_id} is already denied by slack:{TEAM}/UOPER2")
    assert run_status(service, run_id) == "refused"
