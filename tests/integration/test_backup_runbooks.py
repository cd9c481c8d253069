"""backup.setup/run/list/check/verify through the real CLI, real PostgreSQL 15 and pgBackRest.

One source for the module (db.setup takes ~7 s); tests run in file order and each leaves
the source healthy for the next. Faults are real: a broken archive_command in
postgresql.auto.conf, a WAL segment deleted from the repo.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from aep_ops.testing.postgres import free_port, stop_clusters_under
from tests.conftest import BIN, REPO
from tests.support.processes import latest_run_id, pgrep, wait_for_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def source_env():
    """A state dir under /tmp (0755: the postgres user must traverse it) with a seeded, backed-up source."""
    base = Path(tempfile.mkdtemp(prefix="aep-backup-test-"))
    base.chmod(0o755)
    env = {"AEP_OPS_STATE_DIR": str(base), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT": str(free_port()),
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT": "5",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__SETTINGS__FSYNC": "off"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
    try:
        setup = subprocess.run([str(BIN / "inv"), "db.setup"], cwd=REPO, capture_output=True, text=True,
                               env={**clean, **env, "PYTHONPATH": str(REPO)}, timeout=180)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        yield env
    finally:
        stop_clusters_under(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def source(source_env, isolated, monkeypatch) -> Path:
    for key, value in source_env.items():
        monkeypatch.setenv(key, value)
    return Path(source_env["AEP_OPS_STATE_DIR"])


def sql(state: Path, query: str) -> list[tuple]:
    port = os.environ["AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT"]
    with psycopg.connect(host=str(state / "pg/aep-source/sock"), port=port, user="postgres", dbname="aep",
                         autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def steps(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return {s["step_id"]: s["status"] for s in json.loads(proc.stdout)["steps"]}


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


def test_check_detects_a_broken_archive_command_and_setup_repairs_it(source, cli):
    sql(source, "alter system set archive_command = '/bin/false'")
    sql(source, "select pg_reload_conf()")

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


def test_a_missing_pgbackrest_is_one_line_exit_2_and_no_backup(source, cli):
    before = json.loads(cli("backup.list", "--json", check_rc=0).stdout)
    elsewhere = {"AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__PGBACKREST_BIN": "/opt/nowhere/pgbackrest"}
    for task in (["backup.run"], ["backup.list"]):
        proc = cli(*task, env=elsewhere, check_rc=2)
        human = [ln for ln in proc.stderr.splitlines() if not ln.startswith("{")]  # off a TTY, logs are JSON
        assert human[-1].startswith("error: pgBackRest not found at /opt/nowhere/pgbackrest: install pgbackrest")
        assert "Traceback" not in proc.stdout + proc.stderr
    assert json.loads(cli("backup.list", "--json", check_rc=0).stdout) == before


def test_backup_run_killed_mid_backup_resumes_by_adopting_the_backup(source, cli):
    """kill -9 of aep-ops while pgBackRest copies: the backup goes on holding the stanza's lock.
    The resume waits for it and records it, instead of failing on the lock or taking a second."""
    before = {b["label"] for b in json.loads(cli("backup.list", "--json", check_rc=0).stdout)}
    proc = subprocess.Popen([str(BIN / "inv"), "backup.run", "--type", "full"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    backing_up = f"--config={source}/pgbackrest/pgbackrest.conf --stanza=aep --type=full --repo=1 backup"
    assert wait_for_process(backing_up, 60), "pgbackrest backup never started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    run_id = latest_run_id(source, "backup.run")

    resumed = cli("backup.run", "--resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout)["run_id"] == run_id
    new = [b for b in json.loads(cli("backup.list", "--json", check_rc=0).stdout) if b["label"] not in before]
    assert [b["type"] for b in new] == ["full"], "one backup: the killed run's, adopted"
    shown = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
    assert new[0]["label"] in json.dumps(shown["steps"])
    assert pgrep(f"--config={source}/pgbackrest/") == ""
