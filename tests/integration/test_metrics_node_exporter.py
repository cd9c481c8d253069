"""The metrics files as Prometheus gets them: a real prometheus-node-exporter's textfile collector
scrapes the run metrics of real CLI runs (two environments, one never successful), the drill's
and the certificates' files and the backup, archive and logs files, all in one directory; every
family arrives with the catalogue's HELP, every value as written, and no scrape error."""

from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from aep_ops.certs import metrics as certs_metrics
from aep_ops.dr import report as drill_report
from aep_ops.engine.runner import RunResult
from aep_ops.backup import run_hooks as backup_hooks
from aep_ops.logs import run_hooks as logs_hooks
from aep_ops.metrics import catalogue, notifications
from aep_ops.testing.node_exporter import start_node_exporter
from tests.conftest import BIN

STOP = "2026-11-26T01:00:30+00:00"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("node-exporter")
    directory = base / "textfile"
    directory.mkdir()
    _cli_runs(base, directory)
    _area_files(base, directory)
    exporter = start_node_exporter(directory, base / "node_exporter.log")
    try:
        yield SimpleNamespace(directory=directory, exporter=exporter)
    finally:
        exporter.stop()


def _cli_runs(base, directory):
    """demo.greet on local (succeeds) and on dev (fails: its demo directory is a file)."""
    (base / "state-dev").mkdir()
    (base / "state-dev" / "demo").write_text("not a directory")
    for env, state in (("local", base / "state"), ("dev", base / "state-dev")):
        variables = {**{k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")},
                     "AEP_OPS_STATE_DIR": str(state), "AEP_OPS_NO_SYSTEM_CONFIG": "1"}
        done = subprocess.run([str(BIN / "aep-ops"), "demo.greet", "--env", env, "--set", f"metrics.dir={directory}"],
                              cwd=base, env=variables, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == (0 if env == "local" else 1), done.stderr


def _area_files(base, directory):
    def settings(env):
        return SimpleNamespace(state_dir=base / "state", env_name=env, env={},
                               get=lambda key: str(directory) if key == "metrics.dir" else None)

    for env, result in (("prod", "passed"), ("staging", "failed")):
        drill_report.write(settings(env), {
            "runbook": "dr.drill", "run_id": f"r-{env}", "env": env, "finished_at": "2026-11-26T09:41:00+00:00",
            "result": result, "rto_seconds": 125.5, "rpo_seconds": 0.25, "archive_lag_seconds": 2.0,
            "database_bytes": 50_000_000, "restore_bytes_per_second": 12_500_000.0, "checks": [],
            "phases_seconds": {}, "backup_label": "L", "backup_stop": None, "target_time": None,
            "restored_name": "drill-x", "restored_port": 1, "timeline": 2, "last_replayed_commit": None,
            "recovery_stop": None, "rto_objective_seconds": None, "rpo_objective_seconds": None})
    rows = [{"label": "api.example.org:443", "certificate": "api", "host": "web1", "seconds_left": 864000.0,
             "status": "warning"},
            {"label": "api.example.org:443", "certificate": "api", "host": "web2", "seconds_left": None,
             "status": "critical"}]
    acm = [{"certificate": "api", "arn": "arn:aws:acm:eu-west-1:123:certificate/abc", "seconds_left": 5e6}]
    certs_metrics.write(directory / "aep_ops_certs_prod.prom", certs_metrics.render("prod", rows, acm, now=1.5e9))
    backup = {"label": "L", "type": "full", "start": STOP, "stop": STOP, "wal_start": "A", "wal_stop": "B",
              "database_size": 40_000_000, "repo_size": 9_000_000, "repo": 1, "seconds": 33.0}
    backup_hooks.record(settings("prod"), RunResult("backup.run", "prod", "succeeded", run_id="r",
                                                    outputs={"run_backup": backup}))
    archiver = {"failing": True, "lag_seconds": 1800.0, "last_archived_time": STOP, "ready_segments": 4}
    backup_hooks.record(settings("prod"), RunResult("backup.check", "prod", "verification_failed", run_id="r",
                                                    outputs={"archiver_status": archiver}))
    logs_hooks.record(settings("prod"), RunResult("logs.ship", "prod", "succeeded", run_id="r", summary={
        "shipped": [{"size": 1000}, {"size": 24}], "failed": [], "waiting_compression": 1}))
    notifications.record(settings("prod"), [("pagerduty", True), ("slack", False)], now=1.5e9)


def _scrape(exporter):
    families = list(text_string_to_metric_families(exporter.scrape()))
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}
    return {f.name: f for f in families}, values


def _value(values, name, **labels):
    return values[(name, tuple(sorted(labels.items())))]


def test_every_file_is_read_without_error(world):
    families, values = _scrape(world.exporter)
    assert _value(values, "node_textfile_scrape_error") == 0
    files = sorted(p.name for p in world.directory.iterdir())
    assert files == ["aep_ops_archive_prod.prom", "aep_ops_backup_prod.prom", "aep_ops_certs_prod.prom",
                     "aep_ops_dr_prod.prom", "aep_ops_dr_staging.prom", "aep_ops_logs_prod.prom",
                     "aep_ops_notify_prod.prom",
                     "aep_ops_run_demo.greet@dev.prom", "aep_ops_run_demo.greet@local.prom"]
    for name in files:
        assert _value(values, "node_textfile_mtime_seconds", file=str(world.directory / name)) > 0, name
    assert "error gathering metrics" not in world.exporter.log(), world.exporter.log()


def test_every_family_arrives_with_the_catalogues_help(world):
    families, _ = _scrape(world.exporter)
    ours = {name: f for name, f in families.items() if name.startswith("aep_ops_")}
    assert set(ours) == set(catalogue.FAMILIES), "every family of the catalogue, nothing else"
    for name, fam in ours.items():
        assert (fam.documentation, fam.type) == (catalogue.FAMILIES[name].help, "gauge"), name


def test_run_metrics_of_real_runs(world):
    _, values = _scrape(world.exporter)
    local, dev = {"runbook": "demo.greet", "env": "local"}, {"runbook": "demo.greet", "env": "dev"}
    assert _value(values, "aep_ops_runbook_last_result", result="succeeded", **local) == 1
    assert _value(values, "aep_ops_runbook_last_result", result="failed", **local) == 0
    assert _value(values, "aep_ops_runbook_last_result", result="failed", **dev) == 1
    success = _value(values, "aep_ops_runbook_last_success_timestamp_seconds", **local)
    assert success == _value(values, "aep_ops_runbook_last_run_timestamp_seconds", **local) > 1.7e9
    assert ("aep_ops_runbook_last_success_timestamp_seconds", tuple(sorted(dev.items()))) not in values, \
        "never succeeded: no series, so absent() fires"
    assert 0 < _value(values, "aep_ops_runbook_last_duration_seconds", **dev) < 60


def test_domain_metrics(world):
    _, values = _scrape(world.exporter)
    assert _value(values, "aep_ops_dr_result", env="prod") == 1
    assert _value(values, "aep_ops_dr_result", env="staging") == 0
    assert _value(values, "aep_ops_dr_rto_seconds", env="prod") == 125.5
    assert _value(values, "aep_ops_dr_restore_bytes_per_second", env="staging") == 12_500_000
    assert ("aep_ops_dr_last_success_timestamp_seconds", (("env", "staging"),)) not in values
    cert = {"env": "prod", "certificate": "api", "endpoint": "api.example.org:443"}
    assert _value(values, "aep_ops_cert_expiry_seconds", host="web1", **cert) == 864000
    assert _value(values, "aep_ops_cert_check_ok", host="web2", **cert) == 0
    assert _value(values, "aep_ops_acm_cert_expiry_seconds", env="prod", certificate="api",
                  arn="arn:aws:acm:eu-west-1:123:certificate/abc") == 5e6
    full = {"env": "prod", "repo": "1", "type": "full"}
    assert _value(values, "aep_ops_backup_last_end_timestamp_seconds", **full) == 1795654830
    assert _value(values, "aep_ops_backup_repo_bytes", **full) == 9_000_000
    assert _value(values, "aep_ops_archive_failing", env="prod") == 1
    assert _value(values, "aep_ops_archive_ready_segments", env="prod") == 4
    assert _value(values, "aep_ops_logs_shipped_bytes", env="prod") == 1024
    assert _value(values, "aep_ops_logs_pending_files", env="prod") == 1


def test_a_differing_help_would_lose_series(world, tmp_path):
    """Why there is one catalogue: node_exporter keeps the first HELP it reads and drops the series
    of a file that says another, with no scrape error (only a line in its log)."""
    directory = tmp_path / "textfile"
    directory.mkdir()
    ours = world.directory / "aep_ops_run_demo.greet@local.prom"
    (directory / ours.name).write_bytes(ours.read_bytes())
    (directory / "zz_rogue.prom").write_text(
        "# HELP aep_ops_runbook_last_run_timestamp_seconds Another text.\n"
        "# TYPE aep_ops_runbook_last_run_timestamp_seconds gauge\n"
        'aep_ops_runbook_last_run_timestamp_seconds{runbook="rogue",env="x"} 1\n')
    exporter = start_node_exporter(directory, tmp_path / "node_exporter.log")
    try:
        _, values = _scrape(exporter)
        assert ("aep_ops_runbook_last_run_timestamp_seconds", (("env", "x"), ("runbook", "rogue"))) not in values
        assert _value(values, "aep_ops_runbook_last_result", runbook="demo.greet", env="local", result="succeeded") == 1
        assert _value(values, "node_textfile_scrape_error") == 0
        assert 'has help \\"Another text.\\" but should have' in exporter.log(), exporter.log()
    finally:
        exporter.stop()
