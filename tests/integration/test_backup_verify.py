"""backup.verify against a real fault: a WAL segment taken out of the repository.

Real PostgreSQL 15 and pgBackRest; faults are real, not simulated.
"""

from __future__ import annotations

import json
import shutil

import pytest


pytestmark = pytest.mark.slow


def test_verify_reports_a_wal_gap_in_the_repo(source, cli):
    cli("backup.check", check_rc=0)  # at least one more segment after the newest backup
    archive = next((source / "pgbackrest/repo/archive/aep").glob("15-*"))
    segments = sorted(archive.glob("*/0000000*-*"))
    oldest = json.loads(cli("backup.list", "--json", check_rc=0).stdout)[0]["wal_start"]
    victim = next(p for p in segments[:-1] if p.name[:24] > oldest)
    aside = source / victim.name
    shutil.move(victim, aside)
    try:
        proc = cli("backup.verify", "--json")
        assert proc.returncode == 5, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["status"] == "verification_failed"
        gaps = result["outputs"]["wal_continuity"]["repos"]["repo1"]["gaps"]
        assert gaps == [{"from": victim.name[:24], "to": victim.name[:24], "segments": 1}]
        assert f"{victim.name[:24]} (1 missing)" in result["error"]
    finally:
        shutil.move(aside, victim)
    cli("backup.verify", check_rc=0)
