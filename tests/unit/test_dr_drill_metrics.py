"""dr.drill metrics: one Prometheus file per environment, replaced atomically."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from aep_ops import config
from aep_ops.dr import report as drill_report
from tests.support.concurrent_reads import reads_while


def _settings(state: Path, env: str, drill: dict | None = None):
    sets = [f"state_dir={state}", *(f"drill.{key}={value}" for key, value in (drill or {}).items())]
    return config.load(env, sets)


def _report(env: str, run: str, result: str = "passed") -> dict:
    return {"runbook": "dr.drill", "run_id": run, "env": env, "finished_at": "2026-11-26T09:41:00+00:00",
            "result": result, "source": None, "backup_label": "L", "backup_stop": None, "target_time": None,
            "restored_name": "drill-x", "restored_port": 1, "timeline": 2, "last_replayed_commit": None,
            "recovery_stop": None, "rto_seconds": 12.5, "rpo_seconds": 0.5, "archive_lag_seconds": 1.0,
            "rto_objective_seconds": None, "rpo_objective_seconds": None, "checks": [], "phases_seconds": {}}


def _series(path: Path) -> set[str]:
    return {ln.split("{", 1)[1].split("}", 1)[0] for ln in path.read_text().splitlines() if not ln.startswith("#")}


def test_two_environments_keep_their_own_series(tmp_path):
    prod = drill_report.write(_settings(tmp_path, "prod"), _report("prod", "r1", result="failed"))["metrics"]
    dev = drill_report.write(_settings(tmp_path, "dev"), _report("dev", "r2"))["metrics"]
    assert prod != dev and prod.parent == dev.parent == tmp_path / "metrics"
    assert _series(prod) == {'env="prod"'} and _series(dev) == {'env="dev"'}
    assert 'aep_ops_dr_result{env="prod"} 0.000' in prod.read_text(), "the dev drill did not erase prod's failure"
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == ["aep_ops_dr_dev.prom", "aep_ops_dr_prod.prom"]


def test_metrics_file_is_a_template_or_a_directory(tmp_path):
    template = str(tmp_path / "textfile" / "dr_{env}.prom")
    assert drill_report.metrics_path(_settings(tmp_path, "staging", {"metrics_file": template})) == \
        tmp_path / "textfile" / "dr_staging.prom"
    directory = tmp_path / "collector"
    directory.mkdir()
    assert drill_report.metrics_path(_settings(tmp_path, "prod", {"metrics_file": str(directory)})) == \
        directory / "aep_ops_dr_prod.prom"


def test_last_success_survives_a_failed_drill_of_the_same_env_only(tmp_path):
    drill_report.write(_settings(tmp_path, "prod"), _report("prod", "r1"))
    path = drill_report.write(_settings(tmp_path, "prod"), {**_report("prod", "r2", result="failed"),
                                                           "finished_at": "2026-11-27T09:41:00+00:00"})["metrics"]
    first = datetime.fromisoformat("2026-11-26T09:41:00+00:00").timestamp()
    assert f'aep_ops_dr_last_success_timestamp_seconds{{env="prod"}} {first:.3f}' in path.read_text()
    assert 'aep_ops_dr_result{env="prod"} 0.000' in path.read_text()


def test_a_reader_never_sees_a_partial_file(tmp_path):
    settings = _settings(tmp_path, "prod")
    path = drill_report.write(settings, _report("prod", "r0"))["metrics"]
    complete = path.read_text()

    def rewrite() -> None:
        for n in range(200):
            drill_report.write(settings, _report("prod", f"r{n}"))

    seen = reads_while(path, rewrite)
    assert seen and all(text == complete for text in seen), "every read is the whole file"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file left beside it"
