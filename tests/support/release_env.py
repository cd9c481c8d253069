"""An environment ``rel`` whose release configuration points at a ``release_alb`` (a moto ALB with
a real nginx data path and real app processes), and ways to watch a release from outside: the
listener as moto reads it, the release table of the journal, the audit log."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
ENV = "rel"


def write_release_config(path: Path, alb: Any, aws_yaml: str, *, production: bool = False,
                         **release: Any) -> Path:
    """``release:`` for ``alb`` plus ``release`` overrides (JSON is YAML); the state dir comes from the
    test's AEP_OPS_STATE_DIR."""
    settings = {"listener_arn": alb.arns["listener"], "metric_lag_seconds": 0, "min_requests": 20,
                "health_timeout": 10, **release}
    lines = [f"      {k}: {json.dumps(v)}" for k, v in settings.items()]
    lines.append(f"      target_groups: {{blue: {alb.arns['blue']}, green: {alb.arns['green']}}}")
    path.write_text(f"environments:\n  {ENV}:\n    production: {str(production).lower()}\n"
                    f"    backend: local\n    aws: {aws_yaml}\n    release:\n" + "\n".join(lines) + "\n")
    return path


def deregistration_delay(alb: Any, seconds: int) -> None:
    for colour in ("blue", "green"):
        alb.elbv2.modify_target_group_attributes(TargetGroupArn=alb.arns[colour], Attributes=[
            {"Key": "deregistration_delay.timeout_seconds", "Value": str(seconds)}])


def listener_weights(alb: Any) -> dict[str, int]:
    """{colour: weight} as the listener says now."""
    action = alb.elbv2.describe_listeners(ListenerArns=[alb.arns["listener"]])["Listeners"][0]["DefaultActions"][0]
    by_arn = {g["TargetGroupArn"]: g.get("Weight", 1) for g in action["ForwardConfig"]["TargetGroups"]}
    return {c: by_arn.get(alb.arns[c], 0) for c in ("blue", "green")}


def listener_stickiness(alb: Any) -> int | None:
    action = alb.elbv2.describe_listeners(ListenerArns=[alb.arns["listener"]])["Listeners"][0]["DefaultActions"][0]
    sticky = action["ForwardConfig"].get("TargetGroupStickinessConfig") or {}
    return sticky.get("DurationSeconds") if sticky.get("Enabled") else None


def wait_weights(alb: Any, weights: dict[str, int], timeout: float = 60, proc: Any = None) -> float:
    """Wait until the listener reads ``weights``; the monotonic time it was first seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listener_weights(alb) == weights:
            return time.monotonic()
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run exited ({proc.returncode}) before the listener read {weights}")
        time.sleep(0.05)
    raise AssertionError(f"the listener reads {listener_weights(alb)}, not {weights}, after {timeout} s")


def lease(state_dir: Path) -> dict[str, Any] | None:
    """The environment's row of the journal's release table, as a person would query it."""
    db = sqlite3.connect(state_dir / "journal.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM release_leases WHERE env = ?", (ENV,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return dict(row) if row else None


def audit_records(state_dir: Path, action_prefix: str) -> list[dict[str, Any]]:
    path = state_dir / "logs" / "audit.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if str(r.get("action", "")).startswith(action_prefix)]


def argv(*args: str) -> list[str]:
    return [str(BIN / "aep-ops"), *args, "--env", ENV]
