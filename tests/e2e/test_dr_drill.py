"""The DR drill as an on-call engineer runs it: real PostgreSQL, real pgBackRest, real restore."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time

from tests.conftest import BIN, REPO
from tests.support.processes import pgrep, wait_for_process


def drill(cli, *args, **kw):
    return cli("dr.drill", *args, timeout=300, **kw)


def test_drill_passes_reports_and_is_repeatable(cli, local_env, tmp_path):
    out = tmp_path / "drill.json"
    first = drill(cli, "--json", str(out), check_rc=0)
    assert "dr.drill on local" in first.stdout and ": PASSED" in first.stdout
    report = json.loads(out.read_text())
    assert report["result"] == "passed" and report["status"] == "succeeded"
    assert [c["status"] for c in report["checks"]] == ["passed"] * 6
    assert 0 < report["rto_seconds"] < 300 and 0 <= report["rpo_seconds"] < 5
    assert report["archive_lag_seconds"] <= 5 + 5, "archive_timeout (5 s here) bounds the lag of a healthy source"
    assert report["timeline"] >= 2 and report["backup_label"].endswith("F")
    assert "recovery stopping before commit" in report["recovery_stop"]
    md = (local_env / "reports" / f"dr-drill-{report['run_id']}.md").read_text()
    assert "| check_markers | passed |" in md and "RTO (restore start to verified, writable)" in md
    metrics = (local_env / "metrics" / "aep_ops_dr_local.prom").read_text()
    assert 'aep_ops_dr_result{env="local"} 1.000' in metrics
    assert "# TYPE aep_ops_dr_rto_seconds gauge" in metrics
    assert cli("pitr.list", check_rc=0).stdout.strip() == "no restored clusters", "scratch removed"

    second = drill(cli, "--json", check_rc=0)
    steps = {s["step_id"]: s["status"] for s in json.loads(second.stdout)["steps"]}
    assert [steps[s] for s in ("ensure_source_cluster", "ensure_app_database", "ensure_stanza",
                               "ensure_recent_backup")] == ["unchanged"] * 4
    history = cli("dr.history", check_rc=0).stdout
    assert history.count(" passed ") == 2
    svg = (local_env / "reports" / "dr-trend-local.svg").read_text()
    assert "<svg" in svg and "DR drills on local: 2 drills" in svg, "the chart: tests/e2e/test_dr_trend.py"


def test_failed_check_exits_5_keeps_scratch_and_keeps_last_success(cli, local_env):
    drill(cli, check_rc=0)
    metrics = local_env / "metrics" / "aep_ops_dr_local.prom"
    last_success = [ln for ln in metrics.read_text().splitlines()
                    if ln.startswith("aep_ops_dr_last_success_timestamp_seconds")]
    failing = drill(cli, env={"AEP_OPS_ENVIRONMENTS__LOCAL__DRILL__SMOKE_QUERIES": "select * from no_such_table"})
    assert failing.returncode == 5, failing.stderr
    assert "failed  check_smoke_queries" in failing.stdout and 'relation "no_such_table" does not exist' in failing.stdout
    listing = cli("pitr.list", check_rc=0).stdout
    assert "drill-" in listing and "promoted" in listing, "the scratch cluster is kept for inspection"
    text = metrics.read_text()
    assert 'aep_ops_dr_result{env="local"} 0.000' in text
    assert [ln for ln in text.splitlines() if ln.startswith("aep_ops_dr_last_success_timestamp_seconds")] == last_success


def test_drill_killed_during_restore_resumes_without_orphans(cli, local_env):
    cli("db.setup", check_rc=0, timeout=300)
    proc = subprocess.Popen([str(BIN / "inv"), "dr.drill"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = local_env / "journal.sqlite3"
    run_id = None
    deadline = time.monotonic() + 120
    while run_id is None and time.monotonic() < deadline:
        try:
            with sqlite3.connect(journal) as conn:
                row = conn.execute("select run_id from step_events where step_id = 'ensure_scratch_restored'"
                                   " and note = 'applying'").fetchone()
            run_id = row[0] if row else None
        except sqlite3.Error:
            pass
        time.sleep(0.02)
    assert run_id, "the drill never reached the restore"
    restores = local_env / "pg" / "restores"
    # Kill while pgBackRest writes, when it can be caught: it outlives the drill.
    wait_for_process(f"--pg1-path={restores}", 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)

    resumed = cli("dr.drill", "--resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id and result["result"] == "passed"
    assert {s["step_id"]: s["earlier"] for s in result["steps"]}["run_sentinels"] is True, "sentinels not rewritten"
    left = [p for p in restores.iterdir() if not p.name.startswith(".removing-")] if restores.exists() else []
    assert left == [], "no orphaned cluster left behind"
    assert pgrep(f"postgres -D {restores}") == "", "no orphaned server left running"
    assert pgrep(f"--pg1-path={restores}") == "", "no pgBackRest restore left running"


def test_read_only_source_needs_a_target(cli, local_env):
    proc = drill(cli, "--read-only-source")
    assert proc.returncode == 2 and "--read-only-source needs --target-time" in proc.stderr


def test_two_drills_at_once_the_second_exits_3(cli, local_env):
    cli("db.setup", check_rc=0, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen([str(BIN / "inv"), "dr.drill"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    journal = local_env / "journal.sqlite3"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the first drill holds the lock and has started
        try:
            with sqlite3.connect(journal) as conn:
                if conn.execute("select count(*) from runs where runbook = 'dr.drill'").fetchone()[0]:
                    break
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    second = cli("dr.drill")
    assert second.returncode == 3, second.stderr[-500:]
    assert "dr.drill@local is locked by run" in second.stderr
    assert first.wait(timeout=300) == 0


def test_dry_run_plans_the_whole_drill_without_a_source(cli, local_env):
    proc = drill(cli, "--dry-run", check_rc=0)
    assert "1. Ensure the local source cluster exists" in proc.stdout and "would change: not initialised" in proc.stdout
    assert "7. Restore into a scratch cluster at the target: unknown" in proc.stdout
    assert not (local_env / "pg").exists() and not (local_env / "journal.sqlite3").exists()
