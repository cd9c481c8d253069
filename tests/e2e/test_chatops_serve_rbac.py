"""Who may do what from chat: the roles matrix (viewer, operator, admin x dev, prod x read-only,
changing runbook), people named by no role, admin-only runbooks, and user groups resolved through
usergroups.users.list (failing closed). The decision and its reason are in the reply and in the
audit log, with the Slack identity."""

from __future__ import annotations

import json

import pytest

from aep_ops.testing.slack_api import SlackApi
from tests.support.chat_service import ROLES, TEAM, TOKEN, chat_service

MATRIX_ROLES = {**ROLES, "operator": [*ROLES["operator"], f"{TEAM}/S0OPS", f"{TEAM}/S0BROKEN"]}


@pytest.fixture(scope="module")
def api(slack_api):
    slack_api.groups["S0OPS"] = ["UGROUP"]
    slack_api.failing_groups.add("S0BROKEN")
    return slack_api


@pytest.fixture(scope="module")
def service(tmp_path_factory, api):
    with chat_service(tmp_path_factory.mktemp("chat-rbac"), api, roles=MATRIX_ROLES) as svc:
        yield svc


def audit_records(svc) -> list[dict]:
    path = svc.state_dir / "logs" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def outcome(api, user: str, text: str) -> str:
    """What became of ``user``'s command ``text``: "ran", "awaiting approval" (read in the thread of
    the request's own message), or the denial whispered to ``user``."""
    runbook, env = text.split()[0], text.split("--env ")[1].split()[0]

    def seen(a):
        denial = next((w for w in a.whispers_to(user) if w.startswith(f"denied: slack:{TEAM}/{user} ")
                       and f" on {env}; running {runbook} " in w), None)
        if denial:
            return denial
        for message in a.thread(a.root(f"<@{user}> asked: `/ops {text}`")):
            if message.startswith(f"*{runbook}*: done (exit 0)"):
                return "ran"
            if "waits for a second person's approval" in message:
                return "awaiting approval"
        return None
    return api.wait_for(seen, 90, what=f"the outcome of {user}: {text}")


EXPECTED = {
    # (role's user, env, runbook): outcome
    ("UVIEW", "dev", "chatcheck.look"): "ran", ("UVIEW", "prod", "chatcheck.look"): "ran",
    ("UVIEW", "dev", "demo.greet"): "denied", ("UVIEW", "prod", "demo.greet"): "denied",
    ("UOPER1", "dev", "chatcheck.look"): "ran", ("UOPER1", "prod", "chatcheck.look"): "ran",
    ("UOPER1", "dev", "demo.greet"): "ran", ("UOPER1", "prod", "demo.greet"): "awaiting approval",
    ("UADMIN", "dev", "chatcheck.look"): "ran", ("UADMIN", "prod", "chatcheck.look"): "ran",
    ("UADMIN", "dev", "demo.greet"): "ran", ("UADMIN", "prod", "demo.greet"): "awaiting approval",
    ("UNOBODY", "dev", "chatcheck.look"): "denied", ("UNOBODY", "prod", "demo.greet"): "denied",
    ("UGROUP", "dev", "demo.greet"): "ran",  # operator through the user group S0OPS
}


def test_the_roles_matrix(service, api):
    sent, got = {}, {}
    # Runs that take demo.greet's lock on dev go one after the other (together, all but one would
    # rightly be answered "locked"); everything else is sent at once.
    takes_lock = [k for k, want in EXPECTED.items() if k[1:] == ("dev", "demo.greet") and want == "ran"]
    for key in [k for k in EXPECTED if k not in takes_lock] + takes_lock:
        user, env, runbook = key
        text = f"{runbook} --env {env}" + (f" --name {user}{env}" if runbook == "demo.greet" else "")
        assert service.command(text, user=user)[0] == 200
        sent[key] = text
        if key in takes_lock:
            got[key] = outcome(api, user, text)
    got.update({key: outcome(api, key[0], text) for key, text in sent.items() if key not in got})
    simplified = {key: ("denied" if value.startswith("denied: ") else value) for key, value in got.items()}
    assert simplified == EXPECTED
    assert got[("UVIEW", "dev", "demo.greet")] == (
        f"denied: slack:{TEAM}/UVIEW is viewer on dev; running demo.greet needs operator;"
        f" user group {TEAM}/S0BROKEN could not be resolved (fatal_error): it grants nothing")
    assert got[("UNOBODY", "dev", "chatcheck.look")].startswith(
        f"denied: slack:{TEAM}/UNOBODY holds no role on dev; running chatcheck.look needs viewer")
    lookups = [c.args.get("usergroup") for c in api.calls if c.method == "usergroups.users.list"]
    assert lookups.count("S0OPS") == 1, lookups  # resolved once, then cached (up to 5 minutes)
    assert lookups.count("S0BROKEN") > 1, lookups  # a failure is not cached: asked again each time
    assert {c.token for c in api.calls} == {TOKEN}
    decisions = [r for r in audit_records(service) if r["action"] == "chatops.decision"]
    for (user, env, runbook), want in EXPECTED.items():
        mine = [r for r in decisions if r["actor"] == f"slack:{TEAM}/{user}" and r["target"] == env
                and r["args"].get("runbook") == runbook]
        assert len(mine) == 1, (user, env, runbook, mine)
        assert mine[0]["result"].startswith("denied: " if want == "denied" else "allowed: "), mine[0]


def test_a_group_that_cannot_be_resolved_grants_nothing(service, api):
    assert service.command("demo.greet --env dev --name Broken", user="UBROKEN")[0] == 200
    denial = api.wait_for(lambda a: next((w for w in a.whispers_to("UBROKEN") if w.startswith("denied")), None), 60)
    assert "holds no role on dev" in denial
    assert f"user group {TEAM}/S0BROKEN could not be resolved (fatal_error): it grants nothing" in denial


def test_admin_only_runbooks_need_an_admin(service, api):
    assert service.command("pitr.discard copy1 --env dev --dry-run", user="UOPER2")[0] == 200
    denial = api.wait_for(lambda a: next((w for w in a.whispers_to("UOPER2") if w.startswith("denied")), None), 60)
    assert denial == f"denied: slack:{TEAM}/UOPER2 is operator on dev; running pitr.discard needs admin"
    assert service.command("pitr.discard copy1 --env dev --dry-run", user="UADMIN")[0] == 200
    api.wait_for(lambda a: any(m.startswith("*pitr.discard*: ") for m in a.texts("chat.postMessage")), 90,
                 what="the admin's pitr.discard plan")
    assert not any(w.startswith("denied") and "pitr.discard" in w for w in api.whispers_to("UADMIN"))


def test_runs_and_status_need_a_role_in_the_runs_environment(tmp_path):
    api = SlackApi()
    try:
        with chat_service(tmp_path / "runs", api, roles={"operator": ["UOPER1"]}) as svc:
            svc.command("chatcheck.look --env dev", user="UOPER1")
            api.wait_for(lambda a: any(m.startswith("*chatcheck.look*: ") for m in a.texts("chat.postMessage")), 60)
            svc.command("runs --env dev", user="UOPER1")
            listing = api.wait_for(lambda a: next((w for w in a.whispers_to("UOPER1") if "chatcheck.look" in w), None), 60)
            assert "succeeded" in listing and listing.startswith("```")
            run_id = listing.split("```")[1].splitlines()[1].split()[0]
            svc.command(f"status {run_id}", user="UOPER1")
            shown = api.wait_for(lambda a: next((w for w in a.whispers_to("UOPER1") if f"run {run_id}:" in w), None), 60)
            assert "chatcheck.look on dev, succeeded" in shown and f"by slack:{TEAM}/UOPER1" in shown
            svc.command(f"status {run_id}", user="UNOBODY")
            denial = api.wait_for(lambda a: next((w for w in a.whispers_to("UNOBODY") if "denied" in w), None), 60)
            assert denial == f"denied: slack:{TEAM}/UNOBODY holds no role on dev; showing a run needs viewer"
    finally:
        api.close()
