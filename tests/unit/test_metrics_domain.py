"""Domain metrics from what a run already found (its outputs and summary): backup age and size,
archiving, logs shipped and pending. Refused or interrupted runs found nothing: no file."""

from __future__ import annotations

from datetime import datetime

from aep_ops import config
from aep_ops.engine.runner import RunResult
from aep_ops.backup import run_hooks as backup_hooks
from aep_ops.logs import run_hooks as logs_hooks
from aep_ops.metrics import textfile


def _settings(tmp_path, env="prod"):
    return config.load(env, [f"state_dir={tmp_path}"])


def _values(path):
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "env"))): s.value
            for s in textfile.read(path)}


def _backup(kind, stop, size, status="succeeded"):
    outputs = {"run_backup": {"label": f"L-{kind}", "type": kind, "start": stop, "stop": stop, "wal_start": "A",
                              "wal_stop": "B", "database_size": size * 10, "repo_size": size, "repo": 1,
                              "seconds": 4.5}}
    return RunResult("backup.run", "prod", status, run_id="r", outputs=outputs)


def test_backup_run_keeps_one_series_per_repository_and_type(tmp_path):
    settings = _settings(tmp_path)
    backup_hooks.record(settings, _backup("full", "2026-11-26T01:00:30+00:00", 1000))
    path = backup_hooks.record(settings, _backup("incr", "2026-11-26T02:30:10+00:00", 10))
    values = _values(path)
    full, incr = (("repo", "1"), ("type", "full")), (("repo", "1"), ("type", "incr"))
    stop = datetime.fromisoformat("2026-11-26T01:00:30+00:00").timestamp()
    assert values[("aep_ops_backup_last_end_timestamp_seconds", full)] == stop
    assert values[("aep_ops_backup_repo_bytes", full)] == 1000 and values[("aep_ops_backup_repo_bytes", incr)] == 10
    assert values[("aep_ops_backup_database_bytes", incr)] == 100
    assert values[("aep_ops_backup_duration_seconds", incr)] == 4.5
    assert path == tmp_path / "metrics" / "aep_ops_backup_prod.prom"


def test_a_failed_backup_changes_nothing(tmp_path):
    settings = _settings(tmp_path)
    path = backup_hooks.record(settings, _backup("full", "2026-11-26T01:00:30+00:00", 1000))
    before = path.read_bytes()
    assert backup_hooks.record(settings, _backup("full", "2026-11-27T01:00:30+00:00", 5, status="failed")) is None
    assert backup_hooks.record(settings, RunResult("backup.run", "prod", "failed", run_id="r")) is None
    assert path.read_bytes() == before


def _check(status, archiver, trip=None, steps_failed=()):
    outputs = {"archiver_status": archiver, **({"archive_roundtrip": trip} if trip is not None else {})}
    return RunResult("backup.check", "prod", status, run_id="r", outputs=outputs)


ARCHIVER = {"archived_count": 7, "last_archived_wal": "000000010000000000000007",
            "last_archived_time": "2026-11-26T09:40:00+00:00", "failed_count": 0, "failing": False,
            "lag_seconds": 60.0, "ready_segments": 0}


def test_backup_check_passing(tmp_path):
    trip = {**ARCHIVER, "wal": "000000010000000000000008", "seconds": 0.4, "lag_seconds": 0.5,
            "last_archived_time": "2026-11-26T09:41:00+00:00"}
    values = _values(backup_hooks.record(_settings(tmp_path), _check("succeeded", ARCHIVER, trip)))
    assert values == {("aep_ops_archive_failing", ()): 0.0, ("aep_ops_archive_lag_seconds", ()): 0.5,
                      ("aep_ops_archive_last_archived_timestamp_seconds", ()):
                          datetime.fromisoformat("2026-11-26T09:41:00+00:00").timestamp(),
                      ("aep_ops_archive_ready_segments", ()): 0.0}


def test_backup_check_failing_keeps_what_the_archiver_said(tmp_path):
    failing = {**ARCHIVER, "failed_count": 3, "failing": True, "lag_seconds": 4000.0, "ready_segments": 12}
    values = _values(backup_hooks.record(_settings(tmp_path), _check("verification_failed", failing,
                                                               {"failing_repos": [2]})))
    assert values[("aep_ops_archive_failing", ())] == 1.0
    assert values[("aep_ops_archive_lag_seconds", ())] == 4000.0
    assert values[("aep_ops_archive_ready_segments", ())] == 12.0


def test_a_managed_database_writes_no_archive_metrics(tmp_path):
    rds = RunResult("backup.check", "prod", "succeeded", run_id="r",
                    outputs={"archiver_status": {"backend": "rds", "summary": "managed by Amazon RDS"},
                             "archive_roundtrip": {"backend": "rds", "summary": "managed by Amazon RDS"}})
    assert backup_hooks.record(_settings(tmp_path), rds) is None


def test_logs_ship_shipped_and_pending(tmp_path):
    summary = {"shipped": [{"size": 100, "lines": 3}, {"size": 50, "lines": 1}], "failed": ["web2:/x: timeout"],
               "waiting_compression": 2, "manifest": "/m"}
    result = RunResult("logs.ship", "prod", "failed", run_id="r", summary=summary)
    assert _values(logs_hooks.record(_settings(tmp_path), result)) == {
        ("aep_ops_logs_shipped_files", ()): 2.0, ("aep_ops_logs_shipped_bytes", ()): 150.0,
        ("aep_ops_logs_failed_files", ()): 1.0, ("aep_ops_logs_pending_files", ()): 3.0}


def test_logs_ship_with_nothing_to_ship(tmp_path):
    result = RunResult("logs.ship", "prod", "succeeded", run_id="r",
                       outputs={"ship_files": {"summary": "no rotated file waits", "waiting_compression": 1}})
    assert _values(logs_hooks.record(_settings(tmp_path), result)) == {
        ("aep_ops_logs_shipped_files", ()): 0.0, ("aep_ops_logs_shipped_bytes", ()): 0.0,
        ("aep_ops_logs_failed_files", ()): 0.0, ("aep_ops_logs_pending_files", ()): 1.0}


def test_a_run_that_found_nothing_writes_nothing(tmp_path):
    settings = _settings(tmp_path)
    assert logs_hooks.record(settings, RunResult("logs.ship", "prod", "failed", run_id="r")) is None  # hosts unlisted
    assert logs_hooks.record(settings, RunResult("logs.ship", "prod", "interrupted", run_id="r",
                                             summary={"shipped": [], "failed": []})) is None
    assert logs_hooks.record(settings, RunResult("demo.greet", "prod", "succeeded", run_id="r")) is None
    assert backup_hooks.record(settings, RunResult("demo.greet", "prod", "succeeded", run_id="r")) is None
    assert not (tmp_path / "metrics").exists()
