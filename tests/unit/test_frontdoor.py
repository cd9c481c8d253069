"""The front door's contract: every error becomes one line and the exit code the README documents.

The codes are written here as numbers, the README's, never imported from the code under test:
a test comparing against the code's own constants would pass whatever they became."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from aep_ops.base.errors import (ApprovalRequired, ConfigError, ExecutionError, LockedError, SecretError, StepFailed,
                            ToolMissing, UsageError, VerificationFailed)
from aep_ops.tasks.frontdoor import RUN_STATUS_EXIT, front_door

README = Path(__file__).resolve().parents[2] / "README.md"

# README "## Exit codes": the code, and a word of its meaning that the README's row must contain.
DOCUMENTED = {0: "success", 1: "a step failed", 2: "bad input or configuration", 3: "locked",
              4: "approval required", 5: "verification failed"}


def _exit_of(exc: BaseException) -> Exit:
    with pytest.raises(Exit) as caught:
        with front_door():
            raise exc
    return caught.value


def test_the_readme_documents_these_codes():
    text = README.read_text()
    table = text[text.index("## Exit codes"):].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d) \| (.+) \|$", table, re.M))
    assert sorted(int(code) for code in rows) == sorted(DOCUMENTED)
    for code, meaning in DOCUMENTED.items():
        assert meaning in rows[str(code)], (code, rows[str(code)])


@pytest.mark.parametrize(("error", "code"), [
    (UsageError("bad --target-time"), 2),
    (ConfigError("unknown key drill.smoke"), 2),
    (ToolMissing("pgbackrest is not installed"), 2),
    (SecretError("env:AEP_DB_PASSWORD is not set"), 2),
    (LockedError("dr.drill@local is locked"), 3),
    (ApprovalRequired("needs --yes"), 4),
    (VerificationFailed("marker row missing"), 5),
    (StepFailed("restore failed"), 1),
    (ExecutionError("connection reset"), 1),
])
def test_each_error_maps_to_its_documented_code_in_one_line(error, code):
    exit_ = _exit_of(error)
    assert exit_.code == code
    assert exit_.message == f"error: {error}"


def test_run_outcomes_map_to_their_documented_codes():
    assert RUN_STATUS_EXIT == {"planned": 0, "succeeded": 0, "failed": 1, "interrupted": 1,
                               "verification_failed": 5}


def test_a_bug_is_one_internal_error_line_with_exit_1_not_a_traceback():
    exit_ = _exit_of(KeyError("steps"))
    assert exit_.code == 1
    assert exit_.message.startswith("internal error: KeyError: 'steps'")
    assert "aep-ops.jsonl" in exit_.message and "\n" not in exit_.message


def test_a_multi_line_error_is_one_line():
    exit_ = _exit_of(StepFailed("restore failed:\nFATAL:  could not connect\nDETAIL: no route"))
    assert exit_.code == 1 and "\n" not in exit_.message and "could not connect" in exit_.message


def test_sigterm_during_a_run_is_one_line():
    from aep_ops.engine.runner import Interrupted

    exit_ = _exit_of(Interrupted("run 1 interrupted by SIGTERM; resume with --resume 1"))
    assert exit_.code == 1 and exit_.message == "error: run 1 interrupted by SIGTERM; resume with --resume 1"


def test_ctrl_c_is_one_line_with_exit_1():
    exit_ = _exit_of(KeyboardInterrupt())
    assert (exit_.code, exit_.message) == (1, "interrupted")


def test_system_exit_passes_through():
    with pytest.raises(SystemExit):
        with front_door():
            raise SystemExit(0)
