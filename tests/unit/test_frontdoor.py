"""The front door's contract: every error becomes one line and a documented exit code."""

from __future__ import annotations

import pytest
from invoke.exceptions import Exit

from aep_ops.errors import LockedError, UsageError
from aep_ops.tasks.frontdoor import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE, front_door


def _exit_of(exc: BaseException) -> Exit:
    with pytest.raises(Exit) as caught:
        with front_door():
            raise exc
    return caught.value


def test_user_mistakes_map_to_their_codes():
    assert _exit_of(UsageError("bad --target-time")).code == EXIT_USAGE
    assert _exit_of(LockedError("dr.drill@local is locked")).code == EXIT_LOCKED


def test_a_bug_is_one_internal_error_line_with_exit_1_not_a_traceback():
    exit_ = _exit_of(KeyError("steps"))
    assert exit_.code == EXIT_FAILED
    assert exit_.message.startswith("internal error: KeyError: 'steps'")
    assert "aep-ops.jsonl" in exit_.message and "\n" not in exit_.message


def test_sigterm_during_a_run_is_one_line():
    from aep_ops.engine.runner import Interrupted

    exit_ = _exit_of(Interrupted("run 1 interrupted by SIGTERM; resume with --resume 1"))
    assert exit_.code == EXIT_FAILED and exit_.message.startswith("error: run 1 interrupted")


def test_system_exit_passes_through():
    with pytest.raises(SystemExit):
        with front_door():
            raise SystemExit(0)
