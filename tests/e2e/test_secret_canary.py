"""A canary secret must not appear in any log line, journal record, audit record, output or error,
whichever key it hides under (a DSN, a progress line, paramiko's own logger, an exception)."""

from __future__ import annotations

import json

from tests.conftest import REPO

CANARY = "canary-7d41f0c2b9"


def test_canary_is_masked_everywhere(cli, state_dir, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("environments:\n  dev:\n    database: {password: 'env:AEP_CANARY_PW'}\n")
    env = {"AEP_OPS_CONFIG": str(conf), "AEP_CANARY_PW": CANARY, "AEP_OPS_PLUGINS": "tests.support.plugin_runbooks",
           "AEP_OPS_RUNBOOK_DIRS": str(REPO / "tests" / "support" / "runbooks")}
    proc = cli("test.canary", "--env", "dev", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "could not log in as app with password ****" in proc.stderr, "the error still says what failed"
    *events, last = proc.stderr.splitlines()
    run_id = last.split("--resume ")[1].strip()
    assert [json.loads(line)["event"] for line in events if "step.progress" in line] == ["step.progress"], \
        "off a terminal, stderr holds JSON log lines (progress included) and then the one-line outcome"
    assert last.startswith("test.canary: failed at step 2 (fail_with_secret)") and all(line.startswith("{") for line in events)
    shown = cli("runs.show", run_id, "--json", env=env, check_rc=0).stdout
    assert json.loads(shown)["steps"][0]["outputs"]["dsn"] == "postgresql://app:****@db/aep"

    places = {
        "stdout": proc.stdout, "stderr": proc.stderr, "runs.show": shown,
        "log file": (state_dir / "logs" / "aep-ops.jsonl").read_text(),
        "audit log": (state_dir / "logs" / "audit.jsonl").read_text(),
        "journal db": (state_dir / "journal.sqlite3").read_bytes().decode("latin-1"),
    }
    wal = state_dir / "journal.sqlite3-wal"
    if wal.exists():
        places["journal wal"] = wal.read_bytes().decode("latin-1")
    for where, text in places.items():
        assert CANARY not in text, f"canary leaked into the {where}"
    log_text = places["log file"]
    assert "auth with ****" in log_text, "stdlib (paramiko) records pass through the same redaction"
    assert '"dsn": "postgresql://app:****@db/aep"' in log_text
