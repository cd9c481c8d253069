"""pitr.cutover through the CLI: the application's pointer moves to a verified copy, once; the
copy is protected (archiving, a full backup) and a cutover killed half-way resumes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from datetime import timezone

from aep_ops import config
from aep_ops.db import locations
from tests.conftest import BIN, REPO
from tests.support.pitr_source import target_between
from tests.support.processes import wait_for_process


def test_cutover_points_the_application_at_the_copy_once_and_protects_it(cli, source):
    target, _ = target_between(source, ["early"], ["late"])
    cli("pitr.restore", "--target-time", target.astimezone(timezone.utc).isoformat(), "--name", "exact",
        check_rc=0, timeout=300)
    plan = json.loads(cli("pitr.cutover", "exact", "--dry-run", "--json", check_rc=0).stdout)
    assert [s["status"] for s in plan["steps"]] == ["change", "change", "change", "unknown"], plan["steps"]
    assert not (locations.pg_root(config.load("local")) / "active.json").exists(), "a dry run changes nothing"
    cut = cli("pitr.cutover", "--name", "exact", check_rc=0, timeout=300)
    assert "changed" in cut.stdout
    again = json.loads(cli("pitr.cutover", "--name", "exact", "--json", check_rc=0).stdout)
    assert {s["status"] for s in again["steps"]} == {"unchanged"}, "a second cutover changes nothing"
    refused = cli("pitr.discard", "--name", "exact")
    assert refused.returncode == 2 and "cut over" in refused.stderr
    pointer = json.loads((locations.pg_root(config.load("local")) / "active.json").read_text())
    assert pointer["name"] == "exact" and pointer["previous"] == source.dsn()
    assert pointer["previous_name"] == "aep-source"


def test_a_restore_cannot_take_the_original_sources_name(cli, source):
    proc = cli("pitr.restore", "--target-time", "2026-11-26T09:41:00Z", "--name", "aep-source")
    assert proc.returncode == 2 and "original source" in proc.stderr


def _steps(state, run_id):
    with sqlite3.connect(state / "journal.sqlite3") as conn:
        return dict(conn.execute("select step_id, status from steps where run_id = ?", (run_id,)))


def test_a_cutover_killed_during_its_first_backup_resumes_and_backs_up_once(cli, source, local_env):
    target, _ = target_between(source, ["early"], ["late"])
    cli("pitr.restore", "--target-time", target.isoformat(), "--name", "killme", check_rc=0, timeout=300)
    proc = subprocess.Popen([str(BIN / "inv"), "pitr.cutover", "killme"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_process("--stanza=aep-killme --type=full --repo=1 backup", timeout=180), \
            "the cutover never started its full backup"
        proc.send_signal(signal.SIGKILL)  # nothing in the cutover runs to clean up
    finally:
        proc.wait(timeout=30)
    with sqlite3.connect(local_env / "journal.sqlite3") as conn:
        [run_id] = [r[0] for r in conn.execute("select id from runs where runbook = 'pitr.cutover'")]
    before = _steps(local_env, run_id)
    assert before["ensure_cutover"] == "changed" and before["ensure_first_backup"] == "running", before
    assert "check_archiving" not in before, "killed mid-way: the last step never ran"

    resumed = cli("pitr.cutover", "--resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = {s["step_id"]: s for s in json.loads(resumed.stdout)["steps"]}
    assert after["ensure_archiving"]["earlier"] and after["ensure_cutover"]["earlier"]
    assert after["check_archiving"]["status"] == "unchanged"
    db = locations.local_db(config.load("local"))
    assert db.name == "killme" and db.backrest.config.stanza == "aep-killme"
    full = [b for b in db.backrest.info() if b.type == "full" and not b.error]
    assert len(full) == 1, "the interrupted backup is adopted (or redone), never taken twice"
    assert cli("db.url", check_rc=0).stdout.strip() == db.dsn()


def test_cutting_back_before_any_source_exists_says_to_create_it(cli, local_env):
    """A fresh machine: nothing was ever cut over and there is no source; the refusal says what to run."""
    proc = cli("pitr.cutover", "aep-source")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("create it with `inv db.setup --env local`"), proc.stderr
    assert not (locations.pg_root(config.load("local")) / "active.json").exists()
