"""A secret holding characters that JSON escapes (``"``, ``\\``, a non-ASCII letter) is masked
in every JSON record too: masking runs on the structures before serialization. On main it
ran on the serialized text, where the escaped form (``ca\\"na\\\\ry-\\u00fc``) no longer matched."""

from __future__ import annotations

import json

from tests.conftest import REPO

CANARY = 'ca"na\\ry-\u00fc-51e0c7a2d4'
CORE = "51e0c7a2d4"  # whatever escaping does to the rest, this tail would survive it


def _env(tmp_path, value: str) -> dict:
    conf = tmp_path / "c.yaml"
    conf.write_text("environments:\n  dev:\n    database: {password: 'env:AEP_CANARY_PW'}\n")
    return {"AEP_OPS_CONFIG": str(conf), "AEP_CANARY_PW": value, "AEP_OPS_PLUGINS": "tests.support.plugin_runbooks",
            "AEP_OPS_RUNBOOK_DIRS": str(REPO / "tests" / "support" / "runbooks")}


def test_an_escaped_secret_is_masked_in_json_output_logs_audit_and_journal(cli, state_dir, tmp_path):
    env = _env(tmp_path, CANARY)
    out_file = tmp_path / "result.json"
    to_stdout = cli("test.canary", "--env", "dev", "--json", tool="aep-ops", env=env)
    to_file = cli("test.canary", "--env", "dev", "--json", str(out_file), env=env)
    assert to_stdout.returncode == 1 and to_file.returncode == 1, (to_stdout.stderr, to_file.stderr)
    result = json.loads(to_stdout.stdout)  # still valid JSON, with the value masked inside it
    assert result["outputs"]["use_secret"]["dsn"] == "postgresql://app:****@db/aep"
    assert result["error"] == "step fail_with_secret: could not log in as app with password ****"
    assert json.loads(out_file.read_text())["outputs"]["use_secret"]["dsn"] == "postgresql://app:****@db/aep"
    places = {
        "--json stdout": to_stdout.stdout, "stderr": to_stdout.stderr + to_file.stderr,
        "--json FILE": out_file.read_text(),
        "log file": (state_dir / "logs" / "aep-ops.jsonl").read_text(),
        "audit log": (state_dir / "logs" / "audit.jsonl").read_text(),
    }
    for name in ("journal.sqlite3", "journal.sqlite3-wal"):
        if (state_dir / name).exists():
            places[name] = (state_dir / name).read_bytes().decode("latin-1")
    for where, text in places.items():
        assert CORE not in text, f"the escaped secret leaked into the {where}"
    log_lines = places["log file"].splitlines()
    assert all(json.loads(line) for line in log_lines), "every log line is still JSON"
    assert any('"dsn": "postgresql://app:****@db/aep"' in line for line in log_lines)


def test_a_secret_that_cannot_be_masked_safely_is_refused_and_corrupts_nothing(cli, state_dir, tmp_path):
    for value in ("info", "true", "s3cret"):  # a log level, a JSON literal, too short
        proc = cli("test.canary", "--env", "dev", env=_env(tmp_path, value))
        assert proc.returncode == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("test.canary: failed at step 1 (use_secret)"), last
        said = [line for line in proc.stdout.splitlines() if ": failed - " in line]  # the step's error, once
        assert len(said) == 1 and "env:AEP_CANARY_PW: its value cannot be masked safely" in said[0], proc.stdout
        assert value not in said[0].split("(")[0]
    for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines():
        event = json.loads(line)  # on main a secret 'true' turned "ok": true into "ok": ****
        assert event["level"] in ("debug", "info", "warning", "error"), event


def test_the_audit_log_records_the_os_user_beside_the_claimed_actor(cli, state_dir):
    import os
    import pwd

    proc = cli("demo.greet", "--name", "audit", env={"AEP_OPS_ACTOR": "mallory"})
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (state_dir / "logs" / "audit.jsonl").read_text().splitlines()]
    assert records and all(r["actor"] == "mallory" for r in records)
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert {r["os_user"] for r in records} == {f"{me} (uid {os.geteuid()})"}
