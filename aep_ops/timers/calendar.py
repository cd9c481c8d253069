"""OnCalendar expressions, read by systemd itself (``systemd-analyze calendar``): validated,
normalized, and their next elapses. Asking systemd rather than parsing the grammar here means a
schedule that renders is a schedule the timer accepts, and the times shown are the ones it will use."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timezone

from aep_ops.base.errors import ToolMissing, UsageError

ANALYZE = "systemd-analyze"
ELAPSE_PREFIXES = ("Next elapse:", "Iter. #")
TIME_FORMAT = "%a %Y-%m-%d %H:%M:%S UTC"
CALL_SECONDS = 20


def analyze_path() -> str:
    path = shutil.which(ANALYZE, path=os.environ.get("PATH", "") + ":/usr/bin:/bin")
    if path is None:
        raise ToolMissing("systemd-analyze is not installed: install Debian's systemd package"
                          " (it validates schedules and units; systemd need not be running)")
    return path


def elapses(expressions: list[str], iterations: int, base: datetime | None = None) -> dict[str, "Schedule"]:
    """Each expression's normalized form and its next ``iterations`` elapses (UTC), in one call.

    Raises UsageError naming the expression systemd refuses."""
    for expression in expressions:
        _refuse_odd(expression)
    unique = list(dict.fromkeys(expressions))
    if not unique:
        return {}
    argv = [analyze_path(), "calendar", f"--iterations={iterations}"]
    if base is not None:
        argv.append(f"--base-time={base.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    done = subprocess.run([*argv, "--", *unique], capture_output=True, text=True, timeout=CALL_SECONDS,
                          env={**os.environ, "TZ": "UTC", "LC_ALL": "C"}, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        bad = next((e for e in unique if _one_fails(argv, e)), unique[0])
        raise UsageError(f"schedule {bad!r} is not a systemd OnCalendar expression"
                         " (e.g. 'Mon *-*-* 04:00:00 UTC', '*-*-* *:30:00 UTC'; check with"
                         " `systemd-analyze calendar`)")
    return dict(zip(unique, _blocks(done.stdout)))


class Schedule:
    """One expression as systemd reads it."""

    def __init__(self, normalized: str, times: list[datetime]) -> None:
        self.normalized = normalized
        self.times = times

    @property
    def period_seconds(self) -> int:
        """The longest gap between two consecutive elapses seen: how long a healthy schedule can be silent."""
        gaps = [(b - a).total_seconds() for a, b in zip(self.times, self.times[1:])]
        return int(max(gaps)) if gaps else 0


def _blocks(text: str) -> list[Schedule]:
    out: list[Schedule] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Normalized form:"):
            out.append(Schedule(stripped.split(":", 1)[1].strip(), []))
        elif out and stripped.startswith(ELAPSE_PREFIXES):
            stamp = stripped.split(":", 1)[1].strip()
            out[-1].times.append(datetime.strptime(stamp, TIME_FORMAT).replace(tzinfo=timezone.utc))
    return out


def _one_fails(argv: list[str], expression: str) -> bool:
    return subprocess.run([*argv, "--", expression], capture_output=True, timeout=CALL_SECONDS,
                          stdin=subprocess.DEVNULL).returncode != 0


def _refuse_odd(expression: str) -> None:
    """A blank schedule or one with control characters never reaches a unit file."""
    if not isinstance(expression, str) or not expression.strip():
        raise UsageError("a schedule is empty: give an OnCalendar expression such as 'Mon *-*-* 04:00:00 UTC'")
    if not expression.isprintable() or len(expression) > 200:
        raise UsageError(f"schedule {expression[:60]!r} holds control characters or is too long")
