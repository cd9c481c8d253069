"""The DR drill as an on-call engineer runs it: real PostgreSQL, real pgBackRest, real restore.

No figure here depends on how fast the machine is: the RPO is checked against the commits the
source really made around the target, the archive lag against the instants the test saw before
and after the drill, the RTO against its definition. The figures themselves are benchmarked in
bench/drill.py (restore ratios, idle archive lag) and bench/drill_rpo.py (RPO, lag at start)."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timezone

import psycopg

from aep_ops import config
from aep_ops.db import locations
from tests.support.drill_process import drill_process, freeze_mid_restore, tail
from tests.support.processes import assert_killed_mid_step, pgrep, step_status, wait_applying


def drill(cli, *args, **kw):
    return cli("dr.drill", *args, timeout=300, **kw)


def _source_sql(query: str, params: tuple = ()) -> list[tuple]:
    db = locations.local_db(config.load("local"))
    with psycopg.connect(db.dsn(), autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def test_drill_passes_reports_and_is_repeatable(cli, local_env, tmp_path, monkeypatch):
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT", "3600")  # only the drill switches WAL
    cli("db.setup", check_rc=0, timeout=300)
    _source_sql("create table app_activity (at timestamptz default clock_timestamp())")
    _source_sql("insert into app_activity default values")  # the application wrote: not archived yet
    last_archived = _source_sql("select last_archived_time from pg_stat_archiver")[0][0]
    out = tmp_path / "drill.json"
    before = datetime.now(timezone.utc)
    first = drill(cli, "--json-file", str(out), check_rc=0)
    after = datetime.now(timezone.utc)
    assert "dr.drill on local" in first.stdout and ": PASSED" in first.stdout
    report = json.loads(out.read_text())
    assert report["result"] == "passed" and report["status"] == "succeeded"
    assert [c["status"] for c in report["checks"]] == ["passed"] * 6
    outputs = report["outputs"]

    # Archive lag at start: the age of the data the source had not archived when the drill began.
    preflight = outputs["preflight"]
    assert _when(preflight["last_archived_at"]) == last_archived, "nothing was archived before the preflight"
    lag = report["archive_lag_seconds"]
    assert lag == preflight["archive_lag_seconds"]
    assert (before - last_archived).total_seconds() <= lag <= (after - last_archived).total_seconds(), lag

    # RPO: the target minus the last commit the copy replayed, which is the last commit before the target.
    target, replayed = _when(report["target_time"]), _when(report["last_replayed_commit"])
    sentinels = outputs["run_sentinels"]
    committed = dict(_source_sql("select id, pg_xact_commit_timestamp(xmin) from drill_markers where id = any(%s)",
                                 ([sentinels["before_id"], sentinels["after_id"]],)))
    assert committed[sentinels["before_id"]] <= replayed <= target < committed[sentinels["after_id"]]
    assert report["rpo_seconds"] == (target - replayed).total_seconds() > 0

    # RTO: from the start of the restore to the copy verified writable.
    started = _when(outputs["ensure_scratch_restored"]["restore_started_at"]).timestamp()
    assert report["rto_seconds"] == round(outputs["check_writable"]["verified_at"] - started, 3) > 0

    assert report["timeline"] >= 2 and report["backup_label"].endswith("F")
    assert "recovery stopping before commit" in report["recovery_stop"]
    md = (local_env / "reports" / f"dr-drill-{report['run_id']}.md").read_text()
    assert "| check_markers | passed |" in md and "RTO (restore start to verified, writable)" in md
    metrics = (local_env / "metrics" / "aep_ops_dr_local.prom").read_text()
    assert 'aep_ops_dr_result{env="local"} 1.000' in metrics
    assert f'aep_ops_dr_archive_lag_seconds{{env="local"}} {lag:.3f}' in metrics
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


def test_drill_killed_during_restore_resumes_without_orphans(cli, local_env, tmp_path):
    cli("db.setup", check_rc=0, timeout=300)
    restores = local_env / "pg" / "restores"
    log = tmp_path / "killed.log"
    with drill_process(log) as proc:
        # Held (SIGSTOP) while pgBackRest writes the copy or its server replays: both outlive the drill.
        run_id, _ = freeze_mid_restore(proc, local_env, ("pgbackrest", "replay"))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL, tail(log)
    assert_killed_mid_step(local_env, run_id, "ensure_scratch_restored")

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


def test_two_drills_at_once_the_second_exits_3(cli, local_env, tmp_path):
    cli("db.setup", check_rc=0, timeout=300)
    log = tmp_path / "first.log"
    with drill_process(log) as first:
        run_id = wait_applying(local_env, "run_sentinels", timeout=120, proc=first)
        first.send_signal(signal.SIGSTOP)  # held inside a step, lock held, for as long as the second takes
        try:
            assert step_status(local_env, run_id, "run_sentinels") == "running", "the first run is mid-step"
            second = cli("dr.drill")
        finally:
            first.send_signal(signal.SIGCONT)
        rc = first.wait(timeout=300)
    assert second.returncode == 3, second.stderr[-500:]
    assert f"dr.drill@local is locked by run {run_id} (pid {first.pid} " in second.stderr
    assert rc == 0, tail(log)
    assert step_status(local_env, run_id, "run_sentinels") == "changed", "the held run went on where it was"


def test_dry_run_plans_the_whole_drill_without_a_source(cli, local_env):
    proc = drill(cli, "--dry-run", check_rc=0)
    assert "1. Ensure the local source cluster exists" in proc.stdout and "would change: not initialised" in proc.stdout
    assert "7. Restore into a scratch cluster at the target: unknown" in proc.stdout
    assert not (local_env / "pg").exists() and not (local_env / "journal.sqlite3").exists()
