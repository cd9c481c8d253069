"""No secret leaves aep-ops in any spelling: not in a file under the state directory, not on stdout
or stderr, not on a terminal, whatever the front door (text, --json, --json-file, --dry-run,
runs.show, runs.list) and however the run ends (success, a failed step, a crash in a step, an
exception outside any step).

The canaries (tests/support/secret_scan.py) hold ``"``, ``\\`` and a non-ASCII letter: masking
that ran after ``json.dumps`` or on a ``repr`` would miss them, and the scan looks for every
escaped spelling and every plain fragment, so a half-masked secret shows too. One canary per
reference kind (env:, file:, aws-sm: on the moto server, vault: on a KV v2 stand-in), the
aws-sm: one given by ``--set``. The journal here is SQLite (a file under the state directory);
test_secret_canary_pg_journal.py runs the same against a PostgreSQL journal.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest

from tests.conftest import REPO
from tests.support.pty_run import run_on_tty
from tests.support.secret_scan import (CANARIES, canary_world, files_under, leaks, outputs_say_what_happened,
                                       run_canaries)


@pytest.fixture
def world(tmp_path, moto_server):
    with canary_world(tmp_path, moto_server) as built:
        yield built


def test_no_canary_reaches_any_file_output_or_terminal_in_any_form(cli, state_dir, tmp_path, world):
    captured, runs = run_canaries(cli, world, tmp_path)
    flags = ["--env", "dev", *world.set_flags]
    for runbook, rc in (("canary.leak", 0), ("canary.fail", 1), ("canary.internal", 1)):
        tty = run_on_tty(runbook, *flags, env=world.env, timeout=120)
        assert tty.returncode == rc, tty.text
        captured[f"{runbook} on a terminal"] = tty.text
    assert "****" in captured["canary.leak on a terminal"], "the terminal shows the masked values"
    assert "internal error: LookupError" in captured["canary.internal on a terminal"]

    files = files_under(state_dir)
    names = {str(p.relative_to(state_dir)) for p in state_dir.rglob("*") if p.is_file()}
    for wanted in ("logs/aep-ops.jsonl", "logs/audit.jsonl", "journal.sqlite3", "metrics/aep_ops_dr_dev.prom",
                   f"reports/dr-drill-{runs['canary.leak']}.json", f"reports/dr-drill-{runs['canary.leak']}.md",
                   f"patching/dev/{runs['canary.leak']}.json"):
        assert wanted in names, f"{wanted} was not written (files: {sorted(names)}): the scan would prove less"
    assert any(n.startswith("locks/") for n in names), sorted(names)

    found = leaks({**files, **captured})
    assert not found, "secrets leaked:\n" + "\n".join(found)
    outputs_say_what_happened(captured)
    _masked_records_still_say_what_happened(state_dir, runs)


def _masked_records_still_say_what_happened(state_dir, runs) -> None:
    """Masking replaced the values and kept every record whole and readable."""
    log_lines = (state_dir / "logs" / "aep-ops.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in log_lines]
    use = [e for e in events if e["event"] == "canary.use"]
    assert use and use[0]["values"] == ["****"] * len(CANARIES), use
    assert any(e["event"] == "internal_error" and "LookupError" in e.get("exception", "") for e in events)
    assert any(e["event"] == "step.crash" and "KeyError" in e.get("exception", "") for e in events)
    assert any(e["event"] == "auth with **** **** **** **** ****" and e["logger"] == "paramiko.transport"
               for e in events), "a stdlib logger's record is masked, not dropped"
    audit = [json.loads(line) for line in (state_dir / "logs" / "audit.jsonl").read_text().splitlines()]
    assert {a["run_id"] for a in audit} >= set(runs.values()), "every run is audited"
    assert any(a["result"].startswith("failed: could not log in with ****") for a in audit), audit
    me = f"{pwd.getpwuid(os.geteuid()).pw_name} (uid {os.geteuid()})"
    assert {(a["actor"], a["os_user"]) for a in audit} == {("canary-bot", me)}, \
        "each record names the claimed actor (AEP_OPS_ACTOR) and the OS user who really ran it"
    report = json.loads((state_dir / "reports" / f"dr-drill-{runs['canary.leak']}.json").read_text())
    assert report["kept"]["dsn"] == "postgresql://app:****@db", report["kept"]


def test_the_scan_sees_each_spelling_of_each_canary_and_a_half_masked_one(tmp_path):
    """Negative control: every canary needs escaping (its JSON form is not its raw form), and the
    scan finds each spelling, and a fragment of a partly masked value, in a file it is pointed at."""
    for canary in CANARIES:
        forms = canary.forms()
        assert forms["json.dumps"] != canary.value and forms["repr"] != canary.value, canary
        assert leaks({"clean": "postgresql://app:****@db/aep"}, (canary,)) == []
        for name, text in forms.items():
            place = tmp_path / ".hidden" / "deep" / f"{canary.kind}-{name}.log"
            place.parent.mkdir(parents=True, exist_ok=True)
            place.write_bytes(f"prefix {text} suffix".encode())
            found = leaks(files_under(tmp_path), (canary,))
            assert any(str(place) in f and f"{name} form" in f for f in found), (name, found)
            place.unlink()
        half = canary.value[: len(canary.value) // 2] + "****"
        assert leaks({"half": half}, (canary,)), f"a half-masked {canary.kind} canary went unseen"
    escaped = json.dumps({"pw": CANARIES[0].value})
    assert CANARIES[0].value not in escaped and leaks({"json": escaped}), "an escaped value is found"


def test_a_secret_that_cannot_be_masked_safely_is_refused_and_corrupts_no_record(cli, state_dir, tmp_path):
    """A value such as ``true`` or ``info`` would turn every ``"ok": true`` or log level into ****:
    the resolver refuses it, naming the reference, and every log line stays intact. A literal
    secret where a reference belongs is refused without being echoed."""
    conf = tmp_path / "c.yaml"
    conf.write_text("environments:\n  dev:\n    database: {password: 'env:AEP_CANARY_ENV'}\n")
    env = {"AEP_OPS_CONFIG": str(conf), "AEP_OPS_PLUGINS": "tests.support.canary_runbooks",
           "AEP_OPS_RUNBOOK_DIRS": str(REPO / "tests" / "support" / "runbooks")}
    for value in ("info", "true", "s3cret"):  # a log level, a JSON literal, too short
        proc = cli("canary.leak", "--env", "dev", env={**env, "AEP_CANARY_ENV": value})
        assert proc.returncode == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("canary.leak: failed at step 1 (resolve_all)"), last
        said = [line for line in proc.stdout.splitlines() if ": failed - " in line]  # the step's error, once
        assert len(said) == 1 and "env:AEP_CANARY_ENV: its value cannot be masked safely" in said[0], proc.stdout
        assert value not in said[0].split("(")[0]
    literal = CANARIES[0].value  # a value where a reference belongs: refused, and never echoed
    by_variable = {**env, "AEP_OPS_ENVIRONMENTS__DEV__DATABASE__PASSWORD": literal}
    given = {"--set": cli("canary.leak", "--env", "dev", "--set", f"database.password={literal}", env=env),
             "AEP_OPS_*": cli("canary.leak", "--env", "dev", env=by_variable)}
    for how, proc in given.items():
        assert proc.returncode == 2 and "must be a secret reference" in proc.stderr, (how, proc.stderr)
    for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines():
        event = json.loads(line)
        assert event["level"] in ("debug", "info", "warning", "error"), event
    found = leaks({**{f"{how} {name}": getattr(p, name) for how, p in given.items() for name in ("stdout", "stderr")},
                   **files_under(state_dir)}, CANARIES[:1])
    assert not found, found
