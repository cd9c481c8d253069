"""Backup and archiving metrics from real runs (PostgreSQL 15, pgBackRest): backup.run leaves the
age and size of the backup it took, per type, without a query of its own; backup.check leaves the
archiver's lag and backlog, and failing = 1 when archive_command is broken."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from aep_ops.metrics import textfile
from tests.support.backup_source import sql

pytestmark = pytest.mark.slow


def _values(path):
    return {(s.name, s.labels.get("type")): s.value for s in textfile.read(path)}


def test_backup_run_writes_the_age_and_size_of_each_type(source, cli):
    before = time.time()
    full = json.loads(cli("backup.run", "--type", "full", "--json", check_rc=0).stdout)
    incr = json.loads(cli("backup.run", "--type", "incr", "--json", check_rc=0).stdout)
    values = _values(source / "metrics" / "aep_ops_backup_local.prom")
    for kind, result in (("full", full), ("incr", incr)):
        taken = result["outputs"]["run_backup"]
        assert values[("aep_ops_backup_last_end_timestamp_seconds", kind)] == \
            datetime.fromisoformat(taken["stop"]).timestamp() >= int(before)
        assert values[("aep_ops_backup_repo_bytes", kind)] == taken["repo_size"] > 0
        assert values[("aep_ops_backup_database_bytes", kind)] == taken["database_size"] > 0
    assert values[("aep_ops_backup_repo_bytes", "incr")] < values[("aep_ops_backup_repo_bytes", "full")]


def test_backup_check_writes_archiving_and_a_broken_archive_command_is_failing(source, cli):
    cli("backup.check", "--timeout", "60", check_rc=0)
    path = source / "metrics" / "aep_ops_archive_local.prom"
    healthy = _values(path)
    assert healthy[("aep_ops_archive_failing", None)] == 0
    assert 0 <= healthy[("aep_ops_archive_lag_seconds", None)] < 300
    assert healthy[("aep_ops_archive_last_archived_timestamp_seconds", None)] > time.time() - 300
    sql(source, "alter system set archive_command = '/bin/false'")
    sql(source, "select pg_reload_conf()")
    try:
        cli("backup.check", "--timeout", "20", check_rc=5)
        assert _values(path)[("aep_ops_archive_failing", None)] == 1
    finally:
        sql(source, "alter system reset archive_command")
        sql(source, "select pg_reload_conf()")
    run_file = source / "metrics" / "aep_ops_run_backup.check@local.prom"
    run = {s.labels["result"]: s.value for s in textfile.read(run_file) if s.name == "aep_ops_runbook_last_result"}
    assert run["verification_failed"] == 1
