"""What a failed run prints, on a terminal (a pty: stdout and stderr both on it) and off one (pipes,
as a timer runs it), through the real CLI: the error once, the last line the outcome and what to do."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.pty_run import run_on_tty


@pytest.fixture
def blocked_demo(state_dir):
    """demo.greet's directory is a file: its first step fails with the operating system's error."""
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "demo").write_text("not a directory\n")
    return f"File exists: '{state_dir / 'demo'}'"


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
def test_a_failed_step_says_its_error_once_on_a_terminal(blocked_demo, tool):
    tty = run_on_tty("demo.greet", "--name", "x", tool=tool, timeout=60)
    assert tty.returncode == 1, tty.text
    assert tty.text.count(blocked_demo) == 1, tty.text
    assert "Traceback" not in tty.text and "step.failed" not in tty.text and "step.crash" not in tty.text
    run_id = re.search(r"demo\.greet on local: run (\S+)", tty.text).group(1)
    assert tty.lines[-1] == f"demo.greet: failed at step 1 (ensure_demo_dir); resume with --resume {run_id}"
    progress = [line for line in tty.lines if re.match(r"\[\d+/3\] |      -> ", line)]
    assert progress == ["[1/3] Ensure the demo directory exists", "      -> failed: see below"]


def test_a_failed_step_off_a_terminal_is_json_then_one_line(cli, blocked_demo):
    """A timer's journal: stderr holds JSON events only, the error whole in its step.failed event,
    then one plain line, the outcome; stdout the result, where the error is said once."""
    proc = cli("demo.greet", "--name", "x", check_rc=1)
    err = proc.stderr.splitlines()
    events = [json.loads(line) for line in err[:-1]]
    failed = [e for e in events if e["event"] == "step.failed"]
    assert len(failed) == 1 and blocked_demo in failed[0]["error"] and failed[0]["step"] == "ensure_demo_dir"
    assert err[-1].startswith("demo.greet: failed at step 1 (ensure_demo_dir); resume with --resume ")
    assert blocked_demo not in err[-1]
    assert proc.stdout.count(blocked_demo) == 1
    assert "  1. Ensure the demo directory exists: failed - FileExistsError: " in proc.stdout

