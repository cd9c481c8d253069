"""The rows doctor prints (item, ok, detail, fix) and how a step turns them into its outcome."""

from __future__ import annotations

from aep_ops.engine.step import Plan
from aep_ops.base.errors import VerificationFailed
from aep_ops.base.textfmt import duration


def row(item: str, ok: bool, detail: str, fix: str = "") -> dict:
    return {"item": item, "ok": ok, "detail": detail, "fix": fix}


def age_text(seconds: float) -> str:
    """How long ago, for a backup age set against a daily schedule: decimal hours from an hour up
    ("30.2 h", easier to compare with 24 h than "1 d 6 h"), human units below."""
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else duration(seconds)


def rows_or_fail(rows: list[dict], what: str) -> Plan:
    """Unchanged when every row is ok; else VerificationFailed (a soft step: exit 5) naming each fix."""
    problems = [r for r in rows if not r["ok"]]
    if problems:
        raise VerificationFailed(f"{len(problems)} {what} problem(s): " + "; ".join(
            f"{r['item']}: {r['detail']} -> {r['fix']}" for r in problems), details={"rows": rows})
    return Plan.unchanged(f"{len(rows)} {what} check(s) passed", rows=rows)


def split_fix(message: str, default_fix: str) -> tuple[str, str]:
    """aep-ops messages read "what went wrong; what to do": (detail, fix) for a row."""
    detail, sep, fix = message.rpartition("; ")
    return (detail, fix) if sep and detail else (message, default_fix)
