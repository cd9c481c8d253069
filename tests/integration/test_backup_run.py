"""backup.run: a missing pgbackrest, and a kill -9 mid-backup (proven mid-step in the journal) then --resume.

Real PostgreSQL 15 and pgBackRest; faults are real, not simulated.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import BIN, REPO
from tests.support.processes import kill_matching, kill_run_mid_step, pgrep, spawned

pytestmark = pytest.mark.slow


def test_a_missing_pgbackrest_is_one_line_exit_2_and_no_backup(source, cli):
    before = json.loads(cli("backup.list", "--json", check_rc=0).stdout)
    elsewhere = {"AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__PGBACKREST_BIN": "/opt/nowhere/pgbackrest"}
    for task in (["backup.run"], ["backup.list"]):
        proc = cli(*task, env=elsewhere, check_rc=2)
        human = [ln for ln in proc.stderr.splitlines() if not ln.startswith("{")]  # off a TTY, logs are JSON
        assert human[-1].startswith("error: pgBackRest not found at /opt/nowhere/pgbackrest: install pgbackrest")
        assert "Traceback" not in proc.stdout + proc.stderr
    assert json.loads(cli("backup.list", "--json", check_rc=0).stdout) == before


def test_backup_run_killed_mid_backup_resumes_by_adopting_the_backup(source, cli, tmp_path):
    """kill -9 of aep-ops while pgBackRest copies: the backup goes on holding the stanza's lock.
    The resume waits for it and records it, instead of failing on the lock or taking a second."""
    before = {b["label"] for b in json.loads(cli("backup.list", "--json", check_rc=0).stdout)}
    backing_up = f"--config={source}/pgbackrest/pgbackrest.conf --stanza=aep --type=full --repo=1 backup"
    try:
        with spawned([str(BIN / "inv"), "backup.run", "--type", "full"], log=tmp_path / "killed.log", cwd=REPO,
                     env={**os.environ, "PYTHONPATH": str(REPO)}) as proc:
            run_id = kill_run_mid_step(proc, source, "run_backup", backing_up)

        resumed = cli("backup.run", "--resume", run_id, "--json", timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert json.loads(resumed.stdout)["run_id"] == run_id
        new = [b for b in json.loads(cli("backup.list", "--json", check_rc=0).stdout) if b["label"] not in before]
        assert [b["type"] for b in new] == ["full"], "one backup: the killed run's, adopted"
        shown = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
        assert new[0]["label"] in json.dumps(shown["steps"])
        assert pgrep(f"--config={source}/pgbackrest/pgbackrest.conf .* backup") == "", "no backup left running"
    finally:
        kill_matching(f"--config={source}/pgbackrest/")  # a backup the failed test left running
