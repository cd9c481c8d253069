"""Request security of ``chatops.serve``, over real HTTP against the real process: only a request
signed with the signing secret, within 5 minutes, seen for the first time, under the size limit,
for the configured command, reaches a listener. Every refusal has its status and runs nothing
(no journal row, no message in Slack)."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from aep_ops.testing.slack_api import send, sign, slash_body
from tests.support.chat_service import ROLES, SECRET, TEAM, chat_service


@pytest.fixture(scope="module")
def service(tmp_path_factory, slack_api):
    with chat_service(tmp_path_factory.mktemp("chat-security"), slack_api) as svc:
        yield svc


def runs_in_journal(svc) -> int:
    path = svc.state_dir / "journal.sqlite3"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]


def asked(slack_api) -> list[str]:
    return [t for t in slack_api.texts("chat.postMessage") if " asked: " in t]


def test_a_signed_request_is_acknowledged_at_once_and_runs(service, slack_api):
    status, body = service.command("chatcheck.look --env dev", user="UVIEW")
    assert status == 200 and "on it" in json.loads(body)["text"]
    slack_api.wait_text("*chatcheck.look*: done (exit 0)")


@pytest.mark.parametrize("timestamp, why", [
    ("", "missing"), ("abc", "letters"), ("12.5", "a fraction"), ("-5", "negative"), ("+{now}", "a plus sign"), ("{now} 1", "two numbers"),
    ("9" * 40, "forty digits"), ("\u00b2\u00b3\u00b9", "superscript digits (str.isdigit says yes)"),
])
def test_a_malformed_timestamp_is_401_and_runs_nothing(service, slack_api, timestamp, why):
    # "{now}" is filled in here, not in the parameters: xdist's workers must collect the same ids
    timestamp = timestamp.format(now=int(time.time()))
    before, posts = runs_in_journal(service), len(asked(slack_api))
    body = slash_body("demo.greet --env dev --name Mal", team=TEAM, user="UOPER1")
    status, text = send(service.url, body, secret=None, timestamp=timestamp,
                        signature=sign(SECRET, body, timestamp) if timestamp.isascii() else "v0=00")
    assert (status, text) == (401, "missing or malformed X-Slack-Request-Timestamp"), why
    time.sleep(0.5)
    assert runs_in_journal(service) == before and len(asked(slack_api)) == posts


@pytest.mark.parametrize("offset", [-301, -3600, 301, 86400])
def test_a_timestamp_more_than_5_minutes_off_is_401(service, slack_api, offset):
    body = slash_body("demo.greet --env dev --name Old", team=TEAM, user="UOPER1")
    status, text = send(service.url, body, secret=SECRET, timestamp=str(int(time.time()) + offset))
    assert (status, text) == (401, "timestamp more than 5 minutes off")


def test_forged_or_missing_signatures_are_401_and_run_nothing(service, slack_api):
    before, posts = runs_in_journal(service), len(asked(slack_api))
    body = slash_body("demo.greet --env dev --name Forged", team=TEAM, user="UOPER1")
    now = str(int(time.time()))
    forged = [sign("not-the-signing-secret", body, now), "v0=" + "0" * 64, "v1=" + sign(SECRET, body, now)[3:],
              sign(SECRET, body + b"&x=1", now), sign(SECRET, body, str(int(now) - 1))]
    for signature in forged:
        assert send(service.url, body, secret=None, timestamp=now, signature=signature) == (401, "invalid signature")
    assert send(service.url, body, secret=None, timestamp=now, signature="") == (401, "invalid signature")
    time.sleep(0.5)
    assert runs_in_journal(service) == before and len(asked(slack_api)) == posts


def test_an_exact_replay_is_409_and_runs_once(service, slack_api):
    body = slash_body("chatcheck.look --env prod", team=TEAM, user="UADMIN")
    now = str(int(time.time()))
    signature = sign(SECRET, body, now)
    assert send(service.url, body, secret=None, timestamp=now, signature=signature)[0] == 200
    for _ in range(3):
        assert send(service.url, body, secret=None, timestamp=now, signature=signature) == (409, "replayed request")
    slack_api.wait_for(lambda a: [t for t in asked(a) if "chatcheck.look --env prod" in t], 60, what="the request")
    time.sleep(1.5)  # time for a wrongly accepted replay to show up too
    assert len([t for t in asked(slack_api) if "chatcheck.look --env prod" in t]) == 1


def test_an_oversized_body_is_413_and_runs_nothing(service, slack_api):
    before = runs_in_journal(service)
    body = slash_body("demo.greet --env dev --name " + "x" * 70_000, team=TEAM, user="UOPER1")
    status, _ = send(service.url, body, secret=SECRET)
    assert status == 413
    time.sleep(0.5)
    assert runs_in_journal(service) == before


def test_other_paths_methods_and_commands(service, slack_api):
    base = service.url.rsplit("/slack/events", 1)[0]
    import urllib.request

    with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
        assert answer.status == 200
    assert send(base + "/other", b"x", secret=SECRET)[0] == 404
    before = runs_in_journal(service)
    status, _ = service_command_as(service, "/deploy", "demo.greet --env dev")
    assert status == 404  # a slash command the service does not serve: Bolt has no listener for it
    time.sleep(0.5)
    assert runs_in_journal(service) == before


def service_command_as(service, command: str, text: str) -> tuple[int, str]:
    return send(service.url, slash_body(text, team=TEAM, user="UOPER1", command=command), secret=SECRET)


@pytest.mark.parametrize("text, reply", [
    ("nosuch.runbook --env dev", "no command or runbook 'nosuch.runbook'"),
    ("demo.gret --env dev", "did you mean demo.greet?"),
    ("pitr.cutover main --env dev", "no command or runbook 'pitr.cutover'"),  # not offered in chat
    ("demo.greet --env dev --yes", "--yes is the CLI's"),
    ("demo.greet --env dev --set log.level=debug", "--set is the CLI's"),
    ("demo.greet --env dev --json-file /tmp/x.json", "--json-file is the CLI's"),
    ("demo.greet --env dev --nme Al", "unknown flag --nme; did you mean --name?"),
    ('demo.greet --env dev --name "Al', "close the quote"),
    ("demo.greet --name Al", "name the environment: --env ENV"),
    ("demo.greet --env dev --pause -3", "--pause -3"),
    ("approve", "usage: /ops approve RUN_ID"),
])
def test_bad_commands_get_one_line_and_run_nothing(service, slack_api, text, reply):
    before = runs_in_journal(service)
    user = "UADMIN"
    assert service.command(text, user=user)[0] == 200
    whisper = slack_api.wait_for(lambda a: next((w for w in a.whispers_to(user) if reply in w), None), 30, what=reply)
    assert whisper.startswith("error: ") and "\n" not in whisper and "Traceback" not in whisper
    assert runs_in_journal(service) == before


def test_the_rate_limit_answers_in_chat_and_runs_nothing_more(tmp_path, slack_api):
    with chat_service(tmp_path / "rate", slack_api, rate_limit=2, roles={**ROLES, "viewer": ["UVIEW", "URATE"]}) as svc:
        answers = [svc.command("chatcheck.look --env dev", user="URATE")[1] for _ in range(4)]
        assert ["on it" in json.loads(a)["text"] for a in answers] == [True, True, False, False]
        assert "slow down: at most 2 commands a minute" in json.loads(answers[3])["text"]
        assert "on it" in json.loads(svc.command("chatcheck.look --env dev", user="UVIEW")[1])["text"]
        slack_api.wait_for(lambda a: len([t for t in asked(a) if "URATE" in t]) == 2, 60, what="two runs of URATE")
        time.sleep(1)
        assert len([t for t in asked(slack_api) if "URATE" in t]) == 2
