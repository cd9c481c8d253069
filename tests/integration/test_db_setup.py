"""db.setup through the real CLI against real PostgreSQL 15 and pgBackRest; db.url and db.psql.

``local_env`` (tests/conftest.py) gives a state dir the postgres user can traverse, a free
port and a short archive_timeout, and stops every cluster under it at teardown.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from tests.conftest import BIN, REPO
from tests.support.processes import kill_matching, kill_run_mid_step, pgrep, spawned

pytestmark = pytest.mark.slow
STEPS = ["ensure_source_cluster", "ensure_app_database", "ensure_stanza", "ensure_recent_backup"]


def _statuses(proc: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    return [(s["step_id"], s["status"]) for s in json.loads(proc.stdout)["steps"]]


def test_setup_twice_second_run_changes_nothing_then_url_and_psql(local_env, cli):
    t0 = time.monotonic()
    first = cli("db.setup", "--json", check_rc=0)
    first_s = time.monotonic() - t0
    assert _statuses(first) == [(s, "changed") for s in STEPS]
    backup = json.loads(first.stdout)["outputs"]["ensure_recent_backup"]
    assert backup["type"] == "full" and backup["label"].endswith("F") and backup["wal_start"]

    t0 = time.monotonic()
    second = cli("db.setup", "--json", check_rc=0)
    second_s = time.monotonic() - t0
    assert _statuses(second) == [(s, "unchanged") for s in STEPS]
    assert json.loads(second.stdout)["outputs"]["ensure_recent_backup"]["label"] == backup["label"]
    print(f"db.setup: first run {first_s:.1f}s, second run {second_s:.1f}s")

    port = os.environ["AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT"]
    url = cli("db.url", check_rc=0).stdout.strip()
    assert url == f"host={local_env}/pg/aep-source/sock port={port} dbname=aep user=postgres"
    psql = subprocess.run([str(BIN / "inv"), "db.psql"], cwd=REPO, input="select count(*) from users;\n",
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert psql.returncode == 0, psql.stderr
    assert "500" in psql.stdout  # scale 1 seeds 500 users

    (local_env / "pg" / "aep-source" / "data" / "conf.d" / "aep-ops.conf").write_text("# edited by hand\n")
    plan = cli("db.setup", "--dry-run", check_rc=0).stdout
    assert "config differs (archive_command, archive_mode" in plan


def test_sigkill_during_backup_then_resume_completes(local_env, cli, tmp_path):
    """Only the CLI is killed (kill -9 of aep-ops, as an OOM kill would), mid-step (the journal
    says so) while its pgBackRest backup runs: that backup goes on holding the stanza's lock.
    The resume waits for that backup and adopts it, where running its own would fail with
    "unable to acquire lock"."""
    backing_up = f"--config={local_env}/pgbackrest/pgbackrest.conf --stanza=aep --type=full --repo=1 backup"
    try:
        with spawned([str(BIN / "inv"), "db.setup"], log=tmp_path / "killed.log", cwd=REPO,
                     env={**os.environ, "PYTHONPATH": str(REPO)}) as proc:
            run_id = kill_run_mid_step(proc, local_env, "ensure_recent_backup", backing_up)

        resumed = cli("db.setup", "--resume", run_id, "--json", check_rc=0)
        result = json.loads(resumed.stdout)
        assert result["run_id"] == run_id and result["status"] == "succeeded"
        assert [(s["step_id"], s["earlier"]) for s in result["steps"]] == [
            (STEPS[0], True), (STEPS[1], True), (STEPS[2], True), (STEPS[3], False)]
        listed = json.loads(cli("backup.list", "--json", check_rc=0).stdout)
        assert [b["type"] for b in listed] == ["full"], "the killed run's backup was adopted, not taken twice"
        shown = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
        assert shown["steps"][3]["outputs"]["label"] == listed[0]["label"]
        assert pgrep(f"--config={local_env}/pgbackrest/pgbackrest.conf .* backup") == "", "no backup left running"
        assert _statuses(cli("db.setup", "--json", check_rc=0)) == [(s, "unchanged") for s in STEPS]
    finally:
        kill_matching(f"--config={local_env}/pgbackrest/")  # a backup the failed test left running


def test_setup_on_a_port_another_program_listens_on_fails_and_talks_to_no_one(local_env, cli):
    """PostgreSQL listens on 127.0.0.1 only and clients use its own socket directory: a taken port
    is a failed start, never a connection to someone else's server."""
    port = int(os.environ["AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT"])
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", port))
        stranger.listen(8)
        stranger.setblocking(False)
        proc = cli("db.setup", timeout=180)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "db.setup: failed at step 1 (ensure_source_cluster)" in proc.stderr
        assert "failed - PostgreSQL at" in proc.stdout and "did not start" in proc.stdout
        assert "could not create any TCP/IP sockets" in proc.stdout
        assert f"port {port} on 127.0.0.1 is in use by another program" in proc.stdout
        with pytest.raises(BlockingIOError):
            stranger.accept()  # nobody connected to the other program


def test_state_dir_the_postgres_user_cannot_traverse_is_refused(tmp_path, monkeypatch, cli):
    state = tmp_path / "state"  # pytest's tmp_path: 0700 root
    monkeypatch.setenv("AEP_OPS_STATE_DIR", str(state))
    proc = cli("db.setup", check_rc=2)
    assert f"state_dir {state} is not reachable by the postgres user" in proc.stderr
    assert "/var/lib/aep-ops" in proc.stderr
    assert not (state / "pg").exists(), "nothing was created"


def test_db_url_on_rds_masks_the_password_unless_reveal(monkeypatch, cli):
    monkeypatch.setenv("AEP_TEST_DB_PASSWORD", "s3cr3t-pa55word")
    missing = cli("db.url", "--env", "staging", check_rc=2)
    assert "environments.staging.database.host is not set" in missing.stderr
    flags = ["--env", "staging", "--set", "environments.staging.database.host=aep.abc.eu-west-1.rds.amazonaws.com",
             "--set", "environments.staging.rds.master_user=aep_admin",
             "--set", "environments.staging.rds.master_password=env:AEP_TEST_DB_PASSWORD"]
    masked = cli("db.url", *flags, check_rc=0).stdout.strip()
    assert masked == ("host=aep.abc.eu-west-1.rds.amazonaws.com port=5432 dbname=aep user=aep_admin"
                      " sslmode=require password=****")
    revealed = cli("db.url", *flags, "--reveal", check_rc=0).stdout
    assert "password=s3cr3t-pa55word" in revealed
