"""One catalogue of metric names and HELP texts: every writer's file says exactly what it says
(node_exporter drops a family whose HELP differs between two files: node_exporter#1885)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from aep_ops import config
from aep_ops.certs import metrics as certs_metrics
from aep_ops.dr import report as drill_report
from aep_ops.metrics import catalogue, textfile
from aep_ops.metrics.textfile import Sample

NAME = re.compile(r"aep_ops_[a-z0-9_]+")
LABEL = re.compile(r"[a-z_][a-z0-9_]*")


def _families(text: str) -> dict[str, tuple[str, str]]:
    return {f.name: (f.documentation, f.type) for f in text_string_to_metric_families(text)}


def test_every_family_is_well_formed():
    for name, fam in catalogue.FAMILIES.items():
        assert name == fam.name and NAME.fullmatch(name), name
        assert fam.type == "gauge" and fam.help.endswith(".") and not fam.help[0].islower(), name
        assert "\\" not in fam.help and "\n" not in fam.help, f"{name}: HELP must need no escaping"
        assert fam.labels and all(LABEL.fullmatch(label) for label in fam.labels), name
        assert "env" in fam.labels, f"{name}: every series says its environment"
    assert len({f.name for f in catalogue._ALL}) == len(catalogue._ALL), "a family is declared twice"


def test_the_existing_names_are_kept():
    assert {"aep_ops_dr_last_run_timestamp_seconds", "aep_ops_dr_last_success_timestamp_seconds", "aep_ops_dr_result",
            "aep_ops_dr_rto_seconds", "aep_ops_dr_rpo_seconds", "aep_ops_dr_archive_lag_seconds",
            "aep_ops_cert_expiry_seconds", "aep_ops_cert_check_ok", "aep_ops_acm_cert_expiry_seconds",
            "aep_ops_certs_check_last_run_timestamp_seconds"} <= set(catalogue.FAMILIES)


def test_the_drill_file_takes_its_help_from_the_catalogue():
    report = {"env": "prod", "finished_at": "2026-11-26T09:41:00+00:00", "result": "passed", "rto_seconds": 61.5,
              "rpo_seconds": 0.25, "archive_lag_seconds": 3.0, "database_bytes": 8_000_000,
              "restore_bytes_per_second": 2_000_000.0}
    found = _families(drill_report.metrics(report, previous={}))
    assert set(found) == {n for n in catalogue.FAMILIES if n.startswith("aep_ops_dr_")}
    for name, (help_text, kind) in found.items():
        assert (help_text, kind) == (catalogue.FAMILIES[name].help, "gauge"), name
    assert 'aep_ops_dr_restore_bytes_per_second{env="prod"} 2000000.000' in drill_report.metrics(report, {})


def test_the_certs_file_takes_its_help_from_the_catalogue():
    rows = [{"label": "api:443", "certificate": "api", "host": "web1", "seconds_left": 86400.0, "status": "ok"}]
    acm = [{"certificate": "api", "arn": "arn:aws:acm:eu-west-1:1:certificate/x", "seconds_left": 3600.0}]
    found = _families(certs_metrics.render("prod", rows, acm, now=1.0))
    assert set(found) == set(certs_metrics.FAMILIES)
    for name, (help_text, kind) in found.items():
        assert (help_text, kind) == (catalogue.FAMILIES[name].help, "gauge"), name


def test_the_prometheus_client_files_take_their_help_from_the_catalogue(tmp_path):
    settings = config.load("prod", [f"state_dir={tmp_path}"])
    path = textfile.write(textfile.area_file(settings, "logs"), [
        Sample("aep_ops_logs_shipped_files", {"env": "prod"}, 3),
        Sample("aep_ops_logs_pending_files", {"env": "prod"}, 1)])
    found = _families(path.read_text())
    assert found == {n: (catalogue.FAMILIES[n].help, "gauge")
                     for n in ("aep_ops_logs_shipped_files", "aep_ops_logs_pending_files")}
