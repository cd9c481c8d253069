"""The engine tells the run hooks (aep_ops/metrics/run_hooks.py) about every real run and how it
ended; a hook that fails never fails the run. In-process, through run_runbook (the one code path
of every front door); the CLI's side is tests/integration/test_metrics_runs.py."""

from __future__ import annotations

import json
import sys
import types

import pytest

from aep_ops import config
from aep_ops.base.errors import ApprovalRequired
from aep_ops.engine import hooks
from aep_ops.engine.runner import Interrupted, run_runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.metrics import runs, textfile

SEEN: list[tuple[str, str, str]] = []


class Fine(Step):
    id = "fine"
    title = "Changes something"

    def check(self, ctx):
        return Plan.change("do it")


class Guarded(Fine):
    id = "guarded"
    title = "Changes production"
    requires_approval = True


class Stopped(Fine):
    id = "stopped"
    title = "Is stopped by Ctrl-C"

    def apply(self, ctx, plan):
        raise KeyboardInterrupt


@pytest.fixture
def recorder(monkeypatch):
    """A hook module beside the real ones: records what it is told; fails when asked to."""
    module = types.ModuleType("aep_ops_test_recording_hook")
    module.fail = False

    def started(event):
        SEEN.append(("started", event.runbook.id, event.status))
        if module.fail:
            raise RuntimeError("hook broke at start")

    def finished(event):
        SEEN.append(("finished", event.runbook.id, event.status))
        if module.fail:
            raise RuntimeError("hook broke at the end")

    module.run_started, module.run_finished = started, finished
    monkeypatch.setitem(sys.modules, module.__name__, module)
    real = hooks.hook_modules()
    monkeypatch.setattr(hooks, "hook_modules", lambda root=hooks.ROOT_PACKAGE: [module.__name__, *real])
    SEEN.clear()
    yield module
    SEEN.clear()


@pytest.fixture
def declare(throwaway_runbook):
    return throwaway_runbook


def _result(settings, rb_id):
    return {s.labels["result"]: s.value for s in textfile.read(textfile.run_file(settings, rb_id))
            if s.name == runs.RESULT}


def test_the_metrics_hook_is_found_by_looking():
    assert "aep_ops.metrics.run_hooks" in hooks.hook_modules()


def test_every_ending_reaches_the_hooks(recorder, declare):
    settings = config.load("local")
    rb = declare("t.fine", [Fine])
    assert run_runbook(rb, settings, dry_run=True).status == "planned"
    assert SEEN == [], "a dry run is not a run"
    assert run_runbook(rb, settings).status == "succeeded"
    stopped = declare("t.stopped", [Stopped])
    with pytest.raises(Interrupted):
        run_runbook(stopped, settings)
    prod = config.load("prod")
    guarded = declare("t.guarded", [Guarded])
    with pytest.raises(ApprovalRequired):
        run_runbook(guarded, prod)
    assert SEEN == [("started", "t.fine", "running"), ("finished", "t.fine", "succeeded"),
                    ("started", "t.stopped", "running"), ("finished", "t.stopped", "interrupted"),
                    ("started", "t.guarded", "running"), ("finished", "t.guarded", "refused")]
    assert _result(settings, "t.stopped")["interrupted"] == 1.0
    assert _result(prod, "t.guarded")["refused"] == 1.0


def test_a_failing_hook_never_fails_or_hides_the_run(recorder, declare, state_dir):
    recorder.fail = True
    settings = config.load("local")
    result = run_runbook(declare("t.fine", [Fine]), settings)
    assert result.status == "succeeded" and [s.status for s in result.steps] == ["changed"]
    assert _result(settings, "t.fine")["succeeded"] == 1.0, "the other hooks still ran"
    events = [json.loads(line) for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines()]
    failed = [e for e in events if e["event"] == "run_hook.failed"]
    assert [(e["call"], e["error"], e["run_id"]) for e in failed] == [
        ("run_started", "RuntimeError: hook broke at start", result.run_id),
        ("run_finished", "RuntimeError: hook broke at the end", result.run_id)]
    assert all(e["level"] == "warning" for e in failed)


def test_metrics_that_cannot_be_written_are_a_warning(declare, state_dir, tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    settings = config.load("local", [f"metrics.dir={tmp_path / 'not-a-dir' / 'metrics'}"])
    assert run_runbook(declare("t.fine", [Fine]), settings).status == "succeeded"
    events = [json.loads(line) for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines()]
    assert [e["metrics"] for e in events if e["event"] == "metrics.write_failed"] == ["run"]


def test_an_unimportable_hook_is_a_warning(monkeypatch, declare, state_dir):
    monkeypatch.setattr(hooks, "hook_modules", lambda root=hooks.ROOT_PACKAGE: ["aep_ops.no_such.run_hooks"])
    assert run_runbook(declare("t.fine", [Fine]), config.load("local")).status == "succeeded"
    events = [json.loads(line) for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines()]
    assert [e["hook"] for e in events if e["event"] == "run_hook.import_failed"] == ["aep_ops.no_such.run_hooks"]
