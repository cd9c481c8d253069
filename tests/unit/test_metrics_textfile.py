"""Textfile collector files: written through prometheus_client from the catalogue, replaced
atomically, readable by the collector's user, read back for the values a run carries over."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from aep_ops import config
from aep_ops.metrics import runs, textfile
from aep_ops.metrics.textfile import Sample
from tests.support.concurrent_reads import reads_while


def _settings(tmp_path, env="prod", metrics_dir=None):
    data = {"metrics": {"dir": str(metrics_dir)}} if metrics_dir else {}
    return SimpleNamespace(state_dir=tmp_path / "state", env_name=env, get=lambda key: _dotted(data, key))


def _dotted(data, key):
    for part in key.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def test_file_names_per_runbook_and_environment(tmp_path):
    settings = _settings(tmp_path)
    assert textfile.run_file(settings, "backup.run") == tmp_path / "state/metrics/aep_ops_run_backup.run@prod.prom"
    assert textfile.run_file(settings, "../x y") == tmp_path / "state/metrics/aep_ops_run_.._x_y@prod.prom"
    assert textfile.area_file(settings, "backup") == tmp_path / "state/metrics/aep_ops_backup_prod.prom"
    elsewhere = _settings(tmp_path, metrics_dir=tmp_path / "node-exporter")
    assert textfile.run_file(elsewhere, "dr.drill").parent == tmp_path / "node-exporter"


def test_metrics_dir_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("AEP_OPS_METRICS__DIR", str(tmp_path / "textfile"))
    assert textfile.metrics_dir(config.load("local")) == tmp_path / "textfile"
    monkeypatch.delenv("AEP_OPS_METRICS__DIR")
    settings = config.load("local", ["metrics.dir=/var/lib/prometheus/node-exporter"])
    assert str(textfile.metrics_dir(settings)) == "/var/lib/prometheus/node-exporter"
    assert textfile.metrics_dir(config.load("local")) == config.load("local").state_dir / "metrics"


def test_write_then_read_gives_the_samples_back(tmp_path):
    path = tmp_path / "m" / "x.prom"
    written = [Sample("aep_ops_backup_last_end_timestamp_seconds", {"env": "prod", "repo": "1", "type": "full"},
                      1795599660.125),
               Sample("aep_ops_backup_repo_bytes", {"env": "prod", "repo": "1", "type": "full"}, 123456789.0),
               Sample("aep_ops_logs_pending_files", {"env": 'we"ird\\env\n'}, 2)]
    textfile.write(path, written)
    assert sorted(textfile.read(path), key=Sample.key) == sorted(written, key=Sample.key)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["x.prom"], "no temporary file left beside it"


def test_the_file_is_readable_by_the_collector_whatever_the_umask(tmp_path):
    """The timers' services run with UMask=0077; node_exporter runs as another user."""
    old = os.umask(0o077)
    try:
        path = textfile.write(tmp_path / "metrics" / "x.prom", [Sample("aep_ops_logs_failed_files", {"env": "p"}, 0)])
        textfile.write(path, [Sample("aep_ops_logs_failed_files", {"env": "p"}, 1)])
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.stat(path.parent).st_mode & 0o777 == 0o755, "the directory made for it can be searched"


@pytest.mark.parametrize("sample, message", [
    (Sample("aep_ops_made_up", {"env": "prod"}, 1), "not in aep_ops/metrics/catalogue.py"),
    (Sample("aep_ops_logs_failed_files", {"env": "prod", "host": "a"}, 1), "the catalogue says"),
    (Sample("aep_ops_logs_failed_files", {}, 1), "the catalogue says"),
])
def test_a_sample_outside_the_catalogue_is_refused_and_the_old_file_stays(tmp_path, sample, message):
    path = textfile.write(tmp_path / "m" / "x.prom", [Sample("aep_ops_logs_failed_files", {"env": "prod"}, 7)])
    before = path.read_bytes()
    with pytest.raises((KeyError, ValueError), match=message):
        textfile.write(path, [sample])
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["x.prom"], "the temporary file is removed"


def test_a_missing_or_garbled_file_reads_as_empty(tmp_path):
    assert textfile.read(tmp_path / "none.prom") == []
    (tmp_path / "bad.prom").write_text("aep_ops_x{env=\"a\" 1\n")
    assert textfile.read(tmp_path / "bad.prom") == []


def test_merged_replaces_only_the_series_it_has():
    full = Sample("aep_ops_backup_repo_bytes", {"env": "p", "repo": "1", "type": "full"}, 10)
    incr = Sample("aep_ops_backup_repo_bytes", {"env": "p", "repo": "1", "type": "incr"}, 1)
    newer = Sample("aep_ops_backup_repo_bytes", {"env": "p", "repo": "1", "type": "incr"}, 2)
    assert sorted(textfile.merged([full, incr], [newer]), key=Sample.key) == [full, newer]


def test_a_reader_never_sees_a_partial_file(tmp_path):
    settings = _settings(tmp_path)
    path = runs.record(settings, "demo.greet", "succeeded", 1000.0, 1.0)

    def rewrite() -> None:
        for n in range(100):
            runs.record(settings, "demo.greet", "failed" if n % 2 else "succeeded", 1000.0 + n, 1.0)

    seen = reads_while(path, rewrite)
    assert seen and all(text.endswith("\n") and text.count("# HELP") == 4 for text in seen), "every read is whole"
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
