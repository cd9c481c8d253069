"""Real runs of demo.greet write the run metrics: through the CLI, off a terminal, with no stdin
and from another directory (as a timer runs it); a failed or interrupted run moves the last run
and the result, never the last success; a metrics directory that cannot be written fails nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

from aep_ops.metrics import runs, textfile
from aep_ops.metrics.catalogue import RESULTS
from tests.conftest import BIN, REPO
from tests.support.processes import spawned, wait_applying


def _metrics(state_dir, runbook="demo.greet", env="local"):
    path = state_dir / "metrics" / f"aep_ops_run_{runbook}@{env}.prom"
    values = {}
    for s in textfile.read(path):
        assert (s.labels["runbook"], s.labels["env"]) == (runbook, env)
        values[s.labels.get("result", s.name)] = s.value
    return values


def _result(values):
    [result] = [r for r in RESULTS if values[r] == 1.0]
    assert sum(values[r] for r in RESULTS) == 1.0
    return result


def test_a_run_as_a_timer_runs_it_writes_the_run_metrics(state_dir, tmp_path):
    """`aep-ops demo.greet` with no terminal, stdin from /dev/null, in a directory of its own."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TERM", "PYTHONPATH")}
    done = subprocess.run([str(BIN / "aep-ops"), "demo.greet", "--name", "Timer"], cwd=elsewhere, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                          start_new_session=True)
    assert done.returncode == 0, done.stderr
    values = _metrics(state_dir)
    assert _result(values) == "succeeded"
    assert values[runs.LAST_RUN] == values[runs.LAST_SUCCESS] > 0
    assert 0 < values[runs.DURATION] < 60
    assert list(elsewhere.iterdir()) == [], "nothing written to the working directory"


def test_a_failed_run_moves_the_last_run_but_not_the_last_success(cli, state_dir):
    cli("demo.greet", "--name", "Ada", check_rc=0)
    first = _metrics(state_dir)
    shutil.rmtree(state_dir / "demo")
    (state_dir / "demo").write_text("a file where the step wants a directory")
    cli("demo.greet", "--name", "Ada", check_rc=1)
    failed = _metrics(state_dir)
    assert _result(failed) == "failed"
    assert failed[runs.LAST_SUCCESS] == first[runs.LAST_SUCCESS]
    assert failed[runs.LAST_RUN] > first[runs.LAST_RUN]


def test_an_interrupted_run_is_recorded_as_interrupted(cli, state_dir, tmp_path):
    cli("demo.greet", "--name", "Ada", check_rc=0)
    first = _metrics(state_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with spawned([str(BIN / "inv"), "demo.greet", "--name", "Bob", "--pause", "60"], log=tmp_path / "run.log",
                 cwd=REPO, env=env, stdin=subprocess.DEVNULL) as proc:
        wait_applying(state_dir, "ensure_greeting", proc=proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 1, (tmp_path / "run.log").read_text()
    stopped = _metrics(state_dir)
    assert _result(stopped) == "interrupted"
    assert stopped[runs.LAST_SUCCESS] == first[runs.LAST_SUCCESS]
    assert stopped[runs.LAST_RUN] > first[runs.LAST_RUN]


def test_a_dry_run_writes_no_metrics(cli, state_dir):
    cli("demo.greet", "--dry-run", check_rc=0)
    assert not (state_dir / "metrics").exists()


def test_metrics_that_cannot_be_written_never_fail_the_run(cli, state_dir, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    done = cli("demo.greet", "--set", f"metrics.dir={blocker}/metrics", check_rc=0)
    assert "result: succeeded" in done.stdout
    assert '"event": "metrics.write_failed"' in done.stderr and '"level": "warning"' in done.stderr
    assert not (state_dir / "metrics").exists()
