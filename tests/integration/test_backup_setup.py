"""backup.setup (then run, list, check, verify on the same source) through the real CLI.

Real PostgreSQL 15 and pgBackRest; faults are real, not simulated.
"""

from __future__ import annotations

import json

import pytest

from tests.support.backup_source import steps

pytestmark = pytest.mark.slow


def test_setup_run_list_check_verify(source, cli):
    assert steps(cli("backup.setup", "--json", check_rc=0)) == {"ensure_stanza": "unchanged",
                                                                "run_archive_check": "changed"}
    diff = json.loads(cli("backup.run", "--type", "diff", "--json", check_rc=0).stdout)
    out = diff["outputs"]["run_backup"]
    assert out["type"] == "diff" and out["repo"] == 1 and out["wal_start"] <= out["wal_stop"]
    assert out["database_size"] > 0 and out["repo_size"] > 0
    print(f"backup.run --type diff: {out['seconds']}s")

    listed = json.loads(cli("backup.list", "--json", check_rc=0).stdout)
    assert [b["type"] for b in listed] == ["full", "diff"]
    assert listed[-1]["label"] == out["label"] and listed[-1]["wal_start"] == out["wal_start"]
    table = cli("backup.list", check_rc=0).stdout
    assert out["label"] in table and "repo1" in table and out["wal_start"] in table

    check = json.loads(cli("backup.check", "--json", check_rc=0).stdout)
    assert check["status"] == "succeeded"
    status = check["outputs"]["archiver_status"]
    assert status["failing"] is False and status["lag_seconds"] is not None
    assert check["outputs"]["archive_roundtrip"]["wal"] <= check["outputs"]["archive_roundtrip"]["last_archived_wal"]

    verify = json.loads(cli("backup.verify", "--json", check_rc=0).stdout)
    assert verify["outputs"]["wal_continuity"]["repos"]["repo1"]["gaps"] == []

    assert "--type 'weekly': use full, diff or incr" in cli("backup.run", "--type", "weekly", check_rc=2).stderr
    assert "repo2 needs environments.local.backup.s3.bucket" in cli("backup.run", "--repo", "2", check_rc=2).stderr
