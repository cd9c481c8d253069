"""``promtool check rules`` and ``promtool test rules`` (Debian's prometheus package) on rule text:
the generated rules are only as good as Prometheus says they are."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from aep_ops.base.errors import StepFailed, ToolMissing

INSTALL_HINT = "apt-get install prometheus (promtool), or put promtool on PATH"
TIMEOUT = 300


def binary() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").is_file() else None)
    if found is None:
        raise ToolMissing(f"promtool is not installed: {INSTALL_HINT}")
    return found


def check_rules(text: str) -> str:
    """promtool's verdict on the rule file ``text`` (its output); StepFailed with that output when
    it refuses the file (a syntax error, a bad duration, duplicate rules)."""
    with tempfile.TemporaryDirectory(prefix="aep-ops-rules-") as tmp:
        path = Path(tmp) / "aep-ops.rules.yml"
        path.write_text(text, encoding="utf-8")
        return _run(["check", "rules", str(path)], "check rules")


def test_rules(test_file: Path) -> str:
    """``promtool test rules`` on a test file (it names its rule files relative to itself)."""
    return _run(["test", "rules", str(test_file)], "test rules", cwd=test_file.parent)


def _run(args: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run([binary(), *args], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"promtool {what} did not finish within {TIMEOUT} s") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise StepFailed(f"promtool {what} refused the rules: {output}")
    return output
