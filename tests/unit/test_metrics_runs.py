"""Run metrics: the last run moves with every run, the last success only with a successful one."""

from __future__ import annotations


from aep_ops import config
from aep_ops.metrics import runs, textfile
from aep_ops.metrics.catalogue import RESULTS


def _values(path, runbook="backup.run", env="prod"):
    out = {}
    for s in textfile.read(path):
        assert (s.labels["runbook"], s.labels["env"]) == (runbook, env)
        out[s.name + (f"[{s.labels['result']}]" if "result" in s.labels else "")] = s.value
    return out


def test_a_success_sets_both_timestamps_and_the_result(tmp_path):
    settings = config.load("prod", [f"state_dir={tmp_path}"])
    path = runs.record(settings, "backup.run", "succeeded", 1000.0, 12.5)
    values = _values(path)
    assert values[runs.LAST_RUN] == values[runs.LAST_SUCCESS] == 1000.0
    assert values[runs.DURATION] == 12.5
    assert {r: values[f"{runs.RESULT}[{r}]"] for r in RESULTS} == {r: float(r == "succeeded") for r in RESULTS}


def test_a_failure_keeps_the_last_success(tmp_path):
    settings = config.load("prod", [f"state_dir={tmp_path}"])
    runs.record(settings, "backup.run", "succeeded", 1000.0, 1.0)
    for status, ended in (("failed", 2000.0), ("interrupted", 3000.0), ("refused", 4000.0),
                          ("verification_failed", 5000.0)):
        values = _values(runs.record(settings, "backup.run", status, ended, 2.0))
        assert (values[runs.LAST_RUN], values[runs.LAST_SUCCESS]) == (ended, 1000.0), status
        assert values[f"{runs.RESULT}[{status}]"] == 1.0
        assert sum(values[f"{runs.RESULT}[{r}]"] for r in RESULTS) == 1.0


def test_never_succeeded_means_no_last_success_series(tmp_path):
    settings = config.load("prod", [f"state_dir={tmp_path}"])
    values = _values(runs.record(settings, "backup.run", "failed", 2000.0, 2.0))
    assert runs.LAST_SUCCESS not in values and values[runs.LAST_RUN] == 2000.0


def test_runbooks_and_environments_keep_their_own_files(tmp_path):
    prod = config.load("prod", [f"state_dir={tmp_path}"])
    dev = config.load("dev", [f"state_dir={tmp_path}"])
    runs.record(prod, "backup.run", "succeeded", 1000.0, 1.0)
    runs.record(dev, "backup.run", "failed", 2000.0, 1.0)
    runs.record(prod, "dr.drill", "failed", 3000.0, 1.0)
    assert _values(textfile.run_file(prod, "backup.run"))[runs.LAST_SUCCESS] == 1000.0
    assert runs.LAST_SUCCESS not in _values(textfile.run_file(dev, "backup.run"), env="dev")
    assert runs.LAST_SUCCESS not in _values(textfile.run_file(prod, "dr.drill"), runbook="dr.drill")


def test_an_unknown_status_counts_as_a_failure():
    samples = runs.samples("x.y", "prod", "exploded", 5.0, -1.0, last_success=None)
    result = {s.labels["result"]: s.value for s in samples if s.name == runs.RESULT}
    assert result == {r: float(r == "failed") for r in RESULTS}
    assert [s.value for s in samples if s.name == runs.DURATION] == [0.0]
