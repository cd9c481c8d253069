"""The engine's contract, in-process: plan, idempotence, soft verification, approval, retries,
timeouts, resume, and the journal records it leaves behind."""

from __future__ import annotations

import io
import threading

import pytest

from aep_ops import config
from aep_ops.engine import journal as jr
from aep_ops.engine.runner import run_runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import ApprovalRequired, ExecutionError, LockedError, UsageError, VerificationFailed
from aep_ops.demo.runbooks import greet


@pytest.fixture
def settings():
    return config.load("local")


@pytest.fixture
def journal(settings):
    j = jr.Journal.open(settings)
    yield j
    j.close()


def test_demo_second_run_changes_nothing(settings, journal):
    first = run_runbook(greet, settings, params={"name": "Ada"})
    second = run_runbook(greet, settings, params={"name": "Ada"})
    assert first.status == second.status == "succeeded"
    assert [s.status for s in first.steps] == ["changed"] * 3
    assert [s.status for s in second.steps] == ["unchanged"] * 3
    assert (settings.state_dir / "demo" / "greeting.txt").read_text() == "Hello, Ada!\n"
    events = journal.events(second.run_id)
    assert {e["status"] for e in events} == {"running", "unchanged"}, "second run must apply nothing"


def test_dry_run_plans_without_changing(settings, journal):
    result = run_runbook(greet, settings, params={"name": "Ada"}, dry_run=True)
    assert result.status == "planned" and result.run_id is None
    assert [s.status for s in result.steps] == ["change", "unknown", "unknown"]
    assert result.steps[0].summary.startswith("would change: create ")
    assert "unknown until an earlier step runs" in result.steps[1].summary
    assert not (settings.state_dir / "demo").exists()
    run_runbook(greet, settings, params={"name": "Ada"})
    replan = run_runbook(greet, settings, params={"name": "Bob"}, dry_run=True)
    assert [s.status for s in replan.steps] == ["unchanged", "change", "unknown"]
    assert (settings.state_dir / "demo" / "greeting.txt").read_text() == "Hello, Ada!\n"
    assert journal.list_runs(runbook="demo.greet")[0].params == {"name": "Ada", "pause": 0}


def test_bad_parameter_is_refused_before_anything_happens(settings, journal):
    with pytest.raises(UsageError, match="--name"):
        run_runbook(greet, settings, params={"name": "  "})
    assert journal.list_runs() == []
    assert not (settings.state_dir / "demo").exists()


class _Counter:
    applied: list[str] = []


class Fine(Step):
    id = "fine"
    title = "A step that works"

    def check(self, ctx):
        return Plan.unchanged("fine") if "fine" in _Counter.applied else Plan.change("do fine")

    def apply(self, ctx, plan):
        _Counter.applied.append("fine")


class SoftCheck(Step):
    id = "soft_check"
    title = "A verification that fails"
    soft = True

    def check(self, ctx):
        raise VerificationFailed("marker row missing", details={"rows": [1]})


class After(Step):
    id = "after"
    title = "Runs after the soft failure"

    def apply(self, ctx, plan):
        _Counter.applied.append("after")


class Guarded(Step):
    id = "guarded"
    title = "Change production"
    requires_approval = True

    def apply(self, ctx, plan):
        _Counter.applied.append("guarded")


class Flaky(Step):
    id = "flaky"
    title = "Fails twice, then works"
    retries = 2

    def apply(self, ctx, plan):
        _Counter.applied.append("flaky")
        if _Counter.applied.count("flaky") < 3:
            raise ExecutionError("connection reset")


class Slow(Step):
    """Blocks until the test releases it (RELEASE): only its timeout can end it sooner."""

    id = "slow"
    title = "Takes too long"
    timeout = 0.3
    RELEASE = threading.Event()

    def apply(self, ctx, plan):
        Slow.RELEASE.wait()
        _Counter.applied.append("slow ran to its end")


class FailsOnce(Step):
    id = "fails_once"
    title = "Fails on the first attempt"

    def apply(self, ctx, plan):
        _Counter.applied.append("fails_once")
        if _Counter.applied.count("fails_once") == 1:
            raise ExecutionError("disk full")
        return {"done": True}


class OneShot(Step):
    id = "one_shot"
    title = "Not idempotent"
    idempotent = False


@pytest.fixture
def declare(throwaway_runbook):
    _Counter.applied = []
    return throwaway_runbook


def test_soft_verification_failure_finishes_the_run(settings, declare, journal):
    rb = declare("t.soft", [Fine, SoftCheck, After])
    result = run_runbook(rb, settings)
    assert result.status == "verification_failed"
    assert [s.status for s in result.steps] == ["changed", "failed", "changed"]
    assert "marker row missing" in result.error
    assert journal.steps(result.run_id)[1].outputs == {"rows": [1]}


def test_production_step_needs_approval(settings, declare, journal):
    prod = config.load("prod")
    rb = declare("t.guarded", [Fine, Guarded])
    with pytest.raises(ApprovalRequired, match="--yes"):
        run_runbook(rb, prod)
    assert _Counter.applied == ["fine"]
    run = journal.list_runs(runbook="t.guarded")[0]
    assert [s.status for s in journal.steps(run.id)] == ["changed", "pending"]
    resumed = run_runbook(rb, prod, resume=run.id, yes=True)
    assert resumed.status == "succeeded" and _Counter.applied == ["fine", "guarded"]
    assert run_runbook(rb, settings).status == "succeeded", "non-production environments need no approval"


def test_retries_are_bounded(settings, declare):
    rb = declare("t.flaky", [Flaky])
    assert run_runbook(rb, settings).status == "succeeded"
    assert _Counter.applied.count("flaky") == 3
    _Counter.applied = []
    Flaky.retries = 1
    try:
        assert run_runbook(rb, settings).status == "failed"
        assert _Counter.applied.count("flaky") == 2
    finally:
        Flaky.retries = 2


def test_step_timeout_fails_the_step(settings, declare):
    """The step is held until after the run returned (a watchdog releases it if the timeout never
    fires): the run ended at the step's deadline, not when the step would have finished."""
    rb = declare("t.slow", [Slow])
    Slow.RELEASE.clear()
    watchdog = threading.Timer(60, Slow.RELEASE.set)
    watchdog.start()
    try:
        result = run_runbook(rb, settings)
    finally:
        watchdog.cancel()
        Slow.RELEASE.set()
    assert "slow ran to its end" not in _Counter.applied, "the run waited for the step: its timeout never fired"
    assert result.status == "failed" and "0.3s timeout" in result.error


def test_resume_retries_the_failed_step_only(settings, declare, journal):
    rb = declare("t.resume", [Fine, FailsOnce, After])
    first = run_runbook(rb, settings)
    assert first.status == "failed" and "disk full" in first.error and first.resumable
    second = run_runbook(rb, settings, resume=first.run_id)
    assert second.status == "succeeded" and second.run_id == first.run_id
    assert _Counter.applied == ["fine", "fails_once", "fails_once", "after"]
    assert second.steps[0].earlier and not second.steps[1].earlier
    assert journal.get_run(first.run_id).attempts == 2
    with pytest.raises(UsageError, match="already succeeded"):
        run_runbook(rb, settings, resume=first.run_id)


def test_resume_refuses_other_runbook_or_unknown_run(settings, declare):
    rb = declare("t.other", [Fine])
    run = run_runbook(greet, settings, params={"name": "Ada"})
    with pytest.raises(UsageError, match="demo.greet on local"):
        run_runbook(rb, settings, resume=run.run_id)
    with pytest.raises(UsageError, match="no such run"):
        run_runbook(rb, settings, resume="20260101T000000Z-000000")


def test_interrupted_one_shot_step_is_not_blindly_retried(settings, declare, journal):
    rb = declare("t.oneshot", [OneShot])
    run_id = journal.start_run("t.oneshot", "local", {}, actor="t", host="h")
    journal.set_step(run_id, 1, "one_shot", "running", plan="send the email")  # died mid-apply
    journal.finish_run(run_id, "interrupted")
    result = run_runbook(rb, settings, resume=run_id)
    assert result.status == "failed" and "not idempotent" in result.error
    assert result.resumable is False, "the front door must not suggest a --resume that would refuse again"


class Recovering(Step):
    """A one-shot step that can tell what its interrupted attempt did (as backup.run can)."""

    id = "one_shot"
    title = "Send the email once"
    idempotent = False
    found: dict | None = None
    verified: list = []

    def recover(self, ctx, prior):
        return Recovering.found

    def apply(self, ctx, plan):
        _Counter.applied.append("one_shot")
        return {"sent": "now"}

    def verify(self, ctx, outputs):
        Recovering.verified.append(outputs)


@pytest.mark.parametrize("found, applied, outputs", [
    ({"sent": "by the interrupted attempt"}, [], {"sent": "by the interrupted attempt"}),
    (None, ["one_shot"], {"sent": "now"}),
])
def test_interrupted_one_shot_step_that_can_recover_is_recorded_or_redone(settings, declare, journal, found,
                                                                          applied, outputs):
    rb = declare("t.recovering", [Recovering])
    Recovering.found, Recovering.verified = found, []
    run_id = journal.start_run("t.recovering", "local", {}, actor="t", host="h")
    journal.set_step(run_id, 1, "one_shot", "running", plan="send the email")  # died mid-apply
    journal.finish_run(run_id, "interrupted")

    result = run_runbook(rb, settings, resume=run_id)

    assert result.status == "succeeded" and result.steps[0].status == "changed"
    assert _Counter.applied == applied and Recovering.verified == [outputs], "recorded once, verified, never twice"
    assert journal.steps(run_id)[0].outputs == outputs


def test_held_lock_refuses_a_second_run(settings):
    from aep_ops.engine.lock import FileLock, Holder

    lock = FileLock(settings.state_dir / "locks", "demo.greet@local")
    lock.acquire(Holder.me("20261126T000000Z-aaaaaa"))
    try:
        with pytest.raises(LockedError, match=r"locked by run 20261126T000000Z-aaaaaa \(pid \d+ on "):
            run_runbook(greet, settings, params={"name": "Ada"})
    finally:
        lock.release()
    assert run_runbook(greet, settings, params={"name": "Ada"}).status == "succeeded"


def test_loser_names_a_winner_that_has_the_lock_but_has_not_yet_written_who_it_is(settings, monkeypatch):
    """The window between flock and writing the holder: the loser waits for the name (CI hit this).
    The winner writes its name right after the loser's first look, found empty: by ordering, not
    by a timer that a loaded machine could fire after the loser's patience ran out."""
    import fcntl
    import json
    import os
    from dataclasses import asdict

    from aep_ops.engine import lock as lock_module
    from aep_ops.engine.lock import FileLock, Holder

    lock_dir = settings.state_dir / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_dir / "demo.greet@local.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the winner, between flock and pwrite
    real_read, seen = lock_module._read_holder, []

    def read_then_the_winner_writes(loser_fd):
        found = real_read(loser_fd)
        seen.append(found)
        if len(seen) == 1:
            os.pwrite(fd, json.dumps(asdict(Holder.me("20261126T000000Z-bbbbbb"))).encode(), 0)
        return found

    monkeypatch.setattr(lock_module, "_read_holder", read_then_the_winner_writes)
    try:
        with pytest.raises(LockedError, match=r"locked by run 20261126T000000Z-bbbbbb \(pid \d+ on "):
            FileLock(lock_dir, "demo.greet@local").acquire(Holder.me("20261126T000001Z-cccccc"))
    finally:
        os.close(fd)
    assert seen[0] is None, "the loser's first look found no name: the window was hit"


def test_progress_lines_name_step_number_title_and_anchor(settings):
    out = io.StringIO()
    out.aep_ops_human = True
    result = run_runbook(greet, settings, params={"name": "Ada"}, out=out)
    lines = out.getvalue().splitlines()
    assert "[2/3] Write the greeting" in lines  # the anchor: in the result (--json, runs.show), not the line
    assert result.steps[1].anchor == "runbooks/demo.greet.md#2-write-the-greeting-ensure_greeting"
