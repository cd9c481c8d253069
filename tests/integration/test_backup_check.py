"""backup.check against a real fault: a broken archive_command in postgresql.auto.conf.

Real PostgreSQL 15 and pgBackRest; faults are real, not simulated.
"""

from __future__ import annotations

import json

import pytest

from tests.support.backup_source import sql, steps

pytestmark = pytest.mark.slow


@pytest.fixture
def broken_archive_command(source):
    """archive_command = /bin/false in postgresql.auto.conf, as a hand edit would leave it; reset
    afterwards whatever the test did, so the module's shared source archives again."""
    sql(source, "alter system set archive_command = '/bin/false'")
    sql(source, "select pg_reload_conf()")
    try:
        yield source
    finally:
        sql(source, "alter system reset archive_command")
        sql(source, "select pg_reload_conf()")


def test_check_detects_a_broken_archive_command_and_setup_repairs_it(broken_archive_command, cli):
    source = broken_archive_command
    broken = cli("backup.check", "--timeout", "20")
    assert broken.returncode == 5, broken.stdout + broken.stderr
    assert "archiving is failing" in broken.stderr and "last failed WAL 0000000" in broken.stderr

    plan = cli("backup.setup", "--dry-run", check_rc=0).stdout
    assert "archive_command does not push to stanza aep (set in" in plan and "postgresql.auto.conf" in plan
    assert steps(cli("backup.setup", "--json", check_rc=0)) == {"ensure_stanza": "changed",
                                                                "run_archive_check": "changed"}
    assert "archive_command" not in (source / "pg/aep-source/data/postgresql.auto.conf").read_text()
    healthy = json.loads(cli("backup.check", "--json", check_rc=0).stdout)
    assert healthy["outputs"]["archiver_status"]["failed_count"] >= 1, "past failures stay visible"
