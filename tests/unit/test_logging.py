"""Every event carries the run context; stdlib logging goes through the same chain; audit records."""

from __future__ import annotations

import json
import logging

from aep_ops import config
from aep_ops.base import log
from aep_ops.demo.runbooks import greet
from aep_ops.engine.runner import run_runbook


def events(state_dir):
    return [json.loads(line) for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines()]


def test_events_carry_run_context_and_stdlib_joins_the_chain(state_dir):
    settings = config.load("local")
    result = run_runbook(greet, settings, params={"name": "Ada"})
    logging.getLogger("botocore.hooks").warning("from botocore")
    recorded = events(state_dir)
    step_starts = [e for e in recorded if e["event"] == "step.start"]
    assert len(step_starts) == 3
    for e in step_starts:
        assert e["run_id"] == result.run_id and e["runbook"] == "demo.greet" and e["env"] == "local"
        assert e["actor"] and "@" in e["actor"] and e["step"] and e["anchor"].startswith("runbooks/demo.greet.md#")
    foreign = [e for e in recorded if e["event"] == "from botocore"][0]
    assert foreign["logger"] == "botocore.hooks" and foreign["level"] == "warning"
    assert set(log.CONTEXT_KEYS) <= set(foreign)


def test_every_applied_step_is_audited(state_dir):
    settings = config.load("local")
    result = run_runbook(greet, settings, params={"name": "Ada"})
    run_runbook(greet, settings, params={"name": "Ada"})  # unchanged: nothing applied, nothing audited
    records = [json.loads(line) for line in (state_dir / "logs" / "audit.jsonl").read_text().splitlines()]
    assert [r["action"] for r in records] == ["demo.greet:ensure_demo_dir", "demo.greet:ensure_greeting",
                                              "demo.greet:ensure_checksum"]
    assert all(r["run_id"] == result.run_id and r["result"] == "changed" and r["target"] == "local" for r in records)
    assert records[1]["args"]["name"] == "Ada"


def test_audit_masks_sensitive_arguments(state_dir):
    record = log.audit(state_dir, "x", target="t", args={"db_password": "pw-value-1", "count": 3}, result="ok")
    assert record["args"] == {"db_password": "****", "count": 3}
