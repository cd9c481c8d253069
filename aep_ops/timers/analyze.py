"""systemd's own judgement of rendered units, before any is installed: ``systemd-analyze
verify`` (syntax, a missing binary, a bad OnCalendar) and ``systemd-analyze security
--offline=yes`` (the exposure score of each service). Both work without systemd as PID 1."""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

from aep_ops.base.errors import VerificationFailed
from aep_ops.timers.calendar import CALL_SECONDS, analyze_path

SCORE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def verify(files: dict[str, str], bar: float) -> dict[str, float]:
    """Write ``files`` to a scratch directory, verify them all, score every service; returns
    service -> exposure. Raises VerificationFailed with systemd's words for the first problem."""
    with tempfile.TemporaryDirectory(prefix="aep-ops-units-") as scratch:
        paths = []
        for name, text in files.items():
            path = Path(scratch) / name
            path.write_text(text)
            paths.append(str(path))
        if not paths:
            return {}
        done = _run(["verify", "--man=no", "--", *paths])
        problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        if done.returncode != 0 or problems:
            raise VerificationFailed("systemd-analyze verify refused the units: "
                                     + "; ".join(_short(p, scratch) for p in problems[:5]),
                                     {"problems": [_short(p, scratch) for p in problems]})
        scores = {Path(p).name: _score(p) for p in paths if p.endswith(".service")}
    worst = {name: score for name, score in scores.items() if score > bar}
    if worst:
        raise VerificationFailed("exposure above the bar of %.1f: %s" % (
            bar, ", ".join(f"{n} {s:.1f}" for n, s in sorted(worst.items()))), {"exposure": scores})
    return scores


def _score(path: str) -> float:
    done = _run(["security", "--offline=yes", "--no-pager", "--", path])
    match = SCORE.search(done.stdout + done.stderr)
    if not match:
        raise VerificationFailed(f"systemd-analyze security gave no exposure score for {Path(path).name}"
                                 f" (exit {done.returncode})")
    return float(match.group(1))


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([analyze_path(), *args], capture_output=True, text=True, timeout=CALL_SECONDS,
                          stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C", "SYSTEMD_COLORS": "0"})


def _short(line: str, scratch: str) -> str:
    return line.replace(scratch + "/", "").strip()[:300]
