"""Each named check of dr.drill fails once, for a real reason, and the drill says so as an on-call
engineer reads it: exit 5, the check named with its error on the summary, in the JSON and the
Markdown report and on the last line, every other check passed, and the scratch copy kept with a
DSN that answers and the command that removes it. A preflight that cannot pass stops the drill
before anything is restored (exit 1, resumable). Real PostgreSQL 15, real pgBackRest.

One source for the module (db.setup once); each test puts back what it changed on the source and
discards the copies its drills kept, so the tests do not depend on each other or on their order."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from aep_ops import config
from aep_ops.db import locations
from aep_ops.db.backends.local_facts import archive_facts
from aep_ops.pg import facts, orphans
from aep_ops.testing.postgres import free_port, stop_clusters_under
from tests.conftest import BIN, REPO
from tests.support.markdown_tables import tables
from tests.support.drill_process import freeze_mid_restore
from tests.support.processes import spawned

pytestmark = pytest.mark.slow

CHECKS = ("check_markers", "check_row_counts", "check_smoke_queries", "check_amcheck", "check_writable", "measure")


@pytest.fixture(scope="module")
def shared_source():
    """A seeded, backed-up source under /tmp (0755: the postgres user traverses it). archive_timeout
    is an hour, so the only segment switches are the ones a test or a drill makes."""
    base = Path(tempfile.mkdtemp(prefix="aep-drill-checks-"))
    base.chmod(0o755)
    env = {"AEP_OPS_STATE_DIR": str(base), "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT": str(free_port()),
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT": "3600",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__SETTINGS__FSYNC": "off"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
    try:
        setup = subprocess.run([str(BIN / "inv"), "db.setup"], cwd=REPO, capture_output=True, text=True, timeout=300,
                               env={**clean, **env, "AEP_OPS_NO_SYSTEM_CONFIG": "1", "PYTHONPATH": str(REPO)})
        assert setup.returncode == 0, setup.stdout + setup.stderr
        yield env
    finally:
        stop_clusters_under(base)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def state(shared_source, monkeypatch, cli):
    """The shared state dir for this test; the drill copies it leaves (kept on failure) are discarded."""
    for key, value in shared_source.items():
        monkeypatch.setenv(key, value)
    state = Path(shared_source["AEP_OPS_STATE_DIR"])
    before = set(_copies(state))
    yield state
    for name in sorted(set(_copies(state)) - before):
        cli("pitr.discard", "--env", "local", name, timeout=120)


def _copies(state: Path) -> list[str]:
    restores = state / "pg" / "restores"
    return [p.name for p in restores.iterdir() if p.name.startswith("drill-")] if restores.exists() else []


def _source_sql(*statements: str) -> list:
    """Run statements on the source's application database (autocommit); the last one's rows."""
    db = locations.local_db(config.load("local"))
    rows = []
    with psycopg.connect(db.dsn(), autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            cur = conn.execute(statement)
            rows = cur.fetchall() if cur.description else []
    return rows


def _run_ids(state: Path) -> set[str]:
    with sqlite3.connect(state / "journal.sqlite3") as conn:
        return {r[0] for r in conn.execute("select id from runs")}


def assert_graded_failure(rc: int, summary: str, last_line: str, failed: dict[str, str]) -> dict:
    """Exit 5; the checks in ``failed`` (id -> words of its error, in step order), and only they,
    failed, said on the summary, in the JSON and Markdown reports and on the last line; the copy is
    kept, reachable at its DSN, with the command that removes it last. Returns the JSON report."""
    assert rc == 5, summary[-3000:] + last_line
    run_id = re.search(r"^dr\.drill on local, run (\S+): FAILED$", summary, re.M).group(1)
    assert last_line == f"dr.drill: verification failed ({', '.join(failed)}) in run {run_id}"

    shown = {m[2]: (m[1], m[3]) for m in re.finditer(r"^  (passed|failed|skipped) +(\w+) +(.*)$", summary, re.M)}
    assert list(shown) == list(CHECKS), summary
    assert {c for c, (status, _) in shown.items() if status != "passed"} == set(failed), shown
    for check, words in failed.items():
        assert words in shown[check][1], (check, shown[check])

    md_path = Path(re.search(r"^  report: (\S+\.md)$", summary, re.M).group(1))
    report = json.loads(md_path.with_suffix(".json").read_text())
    assert report["run_id"] == run_id and report["result"] == "failed"
    checks = {c["id"]: c for c in report["checks"]}
    assert {c for c, v in checks.items() if v["status"] != "passed"} == set(failed), checks
    rows = {r[0].strip(): (r[1].strip(), r[2]) for r in tables(md_path.read_text())["Checks"][2:]}
    for check, words in failed.items():
        assert checks[check]["status"] == "failed" and words in checks[check]["detail"], checks[check]
        assert rows[check][0] == "failed" and words in rows[check][1], rows[check]

    kept = report["kept"]
    name = report["restored_name"]
    assert kept["name"] == name and kept["reason"] == "for inspection: checks failed"
    assert kept["discard_command"] == f"inv pitr.discard --env local {name}"
    assert summary.rstrip().splitlines()[-2:] == [f"  dsn: {kept['dsn']}", f"  remove it with: {kept['discard_command']}"]
    assert md_path.read_text().rstrip().endswith(f"Remove it when done: `{kept['discard_command']}`")
    with psycopg.connect(kept["dsn"], connect_timeout=5) as conn:  # the copy answers where it says
        assert conn.execute("select count(*) from drill_markers").fetchone()[0] >= 1
    return report


def _drill(cli, *sets: str):
    args = [a for s in sets for a in ("--set", s)]
    proc = cli("dr.drill", *args, timeout=300)
    return proc, proc.stderr.rstrip().splitlines()[-1]


def test_row_counts_that_differ_fail_the_drill(cli, state):
    """An unlogged table holds rows on the source that no restore brings back (its data is not in
    the WAL): counted as a critical table, it makes the copy's row count differ from the source's."""
    _source_sql("create unlogged table cache_entries (k int primary key)",
                "insert into cache_entries select generate_series(1, 10)")
    try:
        proc, last = _drill(cli, "drill.critical_tables=users,cache_entries")
        report = assert_graded_failure(proc.returncode, proc.stdout, last,
                                       {"check_row_counts": "row counts differ: cache_entries expected 10 got 0"})
    finally:
        _source_sql("drop table if exists cache_entries")
    with psycopg.connect(report["kept"]["dsn"], connect_timeout=5) as conn:
        assert conn.execute("select count(*) from cache_entries").fetchone()[0] == 0
        assert conn.execute("select count(*) from users").fetchone()[0] > 0


def test_a_copy_that_refuses_writes_fails_the_drill(cli, state):
    """ALTER SYSTEM without a reload: the source keeps writing, but a backup carries the setting and
    every copy restored from it comes up read-only. The drill says so and still grades the rest."""
    _source_sql("alter system set default_transaction_read_only = on")
    try:
        cli("backup.run", "--type", "incr", check_rc=0, timeout=300)
        proc, last = _drill(cli)
        report = assert_graded_failure(proc.returncode, proc.stdout, last, {
            "check_amcheck": "cannot execute CREATE EXTENSION in a read-only transaction",
            "check_writable": "cannot execute INSERT in a read-only transaction",
            "measure": "RTO not measurable: the copy was never verified writable"})
    finally:
        _source_sql("alter system reset default_transaction_read_only")
        cli("backup.run", "--type", "incr", check_rc=0, timeout=300)  # later drills restore a writable copy
    assert report["rto_seconds"] is None
    with psycopg.connect(report["kept"]["dsn"], connect_timeout=5) as conn:
        assert conn.execute("show default_transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False, "promoted, yet read-only"


def test_a_corrupt_index_page_on_the_copy_fails_amcheck(cli, state, tmp_path):
    """The drill is held (SIGSTOP) once pgBackRest has written the copy's files and before its checks
    run; a page of one index is overwritten on disk; thawed, the drill must find it."""
    _source_sql("create table ledger (id int primary key, v text)", "create index ledger_v on ledger (v)",
                "insert into ledger select g, md5(g::text) from generate_series(1, 20000) g", "checkpoint")
    try:
        path = _source_sql("select pg_relation_filepath('ledger_v')")[0][0]
        cli("backup.run", "--type", "incr", check_rc=0, timeout=300)  # ledger is in the backup: replay never touches it
        report = _drill_with_a_page_scribbled(state, tmp_path, path)
        detail = report["checks"][3]["detail"]
        assert re.search(r"B-tree indexes: public\.ledger_v: invalid page in block 1 of relation base/", detail), detail
        assert report["amcheck"]["corrupt_relations"] == ["public.ledger_v"]
    finally:
        _source_sql("drop table if exists ledger")


def _drill_with_a_page_scribbled(state: Path, tmp_path: Path, relation_file: str, *args: str) -> dict:
    """A drill held (SIGSTOP) once pgBackRest has written the copy's files and before its checks run;
    page 1 of ``relation_file`` (relative to the data directory) is overwritten on disk; thawed, the
    drill must grade check_amcheck, and it alone, as failed on one corrupt relation. Its report."""
    earlier = _run_ids(state)
    log = tmp_path / "drill.log"
    with spawned([str(BIN / "inv"), "dr.drill", *args], log=log, cwd=REPO,
                 env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}) as proc:
        try:
            run_id, _ = freeze_mid_restore(proc, state, ("pgbackrest", "replay"), earlier=earlier)
            datadir = state / "pg" / "restores" / f"drill-{run_id.lower()}" / "data"
            _wait_files_written(datadir, datadir / relation_file)
            with open(datadir / relation_file, "r+b") as fh:  # the middle of page 1 (data checksums are on)
                fh.seek(8192 + 4000)
                fh.write(b"\xff" * 64)
        finally:
            proc.send_signal(signal.SIGCONT)
        rc = proc.wait(timeout=300)
    *shown, last = [ln for ln in log.read_text().splitlines() if not ln.startswith("{")]  # not the JSON log
    summary = "\n".join(shown)
    return assert_graded_failure(rc, summary[summary.index("dr.drill on local, run"):], last,
                                 {"check_amcheck": "pg_amcheck found 1 corrupt relation of "})


def _wait_files_written(datadir: Path, index_file: Path, timeout: float = 120) -> None:
    """pgBackRest has finished writing into the (held) drill's copy: no writer left, the file there."""
    deadline = time.monotonic() + timeout
    while orphans.writers_of(datadir) or not index_file.exists():
        assert time.monotonic() < deadline, f"pgBackRest still writing into {datadir} after {timeout:.0f}s"
        time.sleep(0.02)


def test_objectives_set_below_what_the_drill_takes_fail_the_drill(cli, state):
    """RTO and RPO objectives of 1 s (--set): a smoke query that takes 1.5 s keeps the copy from
    being verified within 1 s of the restore's start, and data written on the source more than 1 s
    before the drill and not yet archived (archive_timeout is an hour) is an archive lag over 1 s."""
    _source_sql("create table if not exists app_activity (at timestamptz default clock_timestamp())",
                "insert into app_activity default values")
    db = locations.local_db(config.load("local"))
    _wait_lag_over(db, 1.0)
    proc, last = _drill(cli, "objectives.rto_seconds=1", "objectives.rpo_seconds=1", "drill.restore_timeout=600",
                        "drill.smoke_queries=select pg_sleep(1.5)")
    report = assert_graded_failure(proc.returncode, proc.stdout, last, {"measure": "exceeds the objective 1.0 s"})
    detail = report["checks"][-1]["detail"]
    assert re.fullmatch(r"RTO [\d.]+ s exceeds the objective 1\.0 s; archive lag [\d.]+ s exceeds the RPO objective 1\.0 s",
                        detail), detail
    assert report["rto_objective_seconds"] == 1 and report["rto_seconds"] > 1.5
    assert report["rpo_objective_seconds"] == 1 and report["archive_lag_seconds"] > 1
    assert report["rpo_seconds"] < 1, "the copy itself lost less than the objective: only the lag missed it"


def _wait_lag_over(db: locations.LocalDb, seconds: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (archive_facts(db)["archive_lag_seconds"] or 0) <= seconds:
        assert time.monotonic() < deadline, f"the archive lag never passed {seconds} s: {archive_facts(db)}"
        time.sleep(0.05)


def test_a_preflight_that_cannot_pass_stops_the_drill_before_any_restore(cli, state):
    """The repository refuses the archiver's writes: WAL archiving fails on the source. The drill
    stops at its preflight (exit 1, nothing restored, no report); fixed, --resume completes it."""
    db = locations.local_db(config.load("local"))
    archive_dir = Path(db.backrest.config.repo1_path) / "archive" / db.backrest.config.stanza
    modes = {p: p.stat().st_mode for p in [archive_dir, *archive_dir.rglob("*")] if p.is_dir()}
    try:
        for p in modes:
            p.chmod(0o500)
        failed_wal = _source_sql("insert into drill_markers (label) values ('preflight test')",
                                 "select pg_walfile_name(pg_switch_wal())")[0][0]
        _wait_archiver(db, lambda s, _conn: s.failing and s.last_failed_wal == failed_wal, f"archiving {failed_wal} to fail")
        proc = cli("dr.drill", timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
        run_id = re.search(r"^dr\.drill on local: run (\S+)$", proc.stdout, re.M).group(1)
        assert proc.stderr.rstrip().splitlines()[-1] == \
            f"dr.drill: failed at step 4 (preflight); resume with --resume {run_id}"
        assert ("4. Preflight: source reachable, archiving healthy, restore space available: failed - WAL archiving"
                f" is failing on the source (last failed {failed_wal}") in proc.stdout
        assert f"drill-{run_id.lower()}" not in _copies(state) and not (state / "reports" / f"dr-drill-{run_id}.json").exists()
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    now_wal = _source_sql("select pg_walfile_name(pg_switch_wal())")[0][0]  # wakes the archiver
    _wait_archiver(db, lambda s, conn: not s.failing and facts.is_archived(
        now_wal, s, facts.archive_state(conn, now_wal)), "archiving to recover")
    resumed = cli("dr.drill", "--resume", run_id, "--json", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id and result["result"] == "passed"


def _wait_archiver(db: locations.LocalDb, condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(db.dsn(), autocommit=True, connect_timeout=5) as conn:
        while not condition(status := facts.archiver_status(conn), conn):
            assert time.monotonic() < deadline, f"waited {timeout:.0f}s for {what}: {status}"
            time.sleep(0.05)


def test_a_thorough_drill_checks_the_heap_and_names_a_corrupt_table(cli, state, tmp_path):
    """As the corrupt index above, with a page of a table's heap (no index on it): only the heap
    checks of a thorough drill (``--thorough``, the weekly timer's) read it."""
    _source_sql("create table ledger_heap (id int, v text)",
                "insert into ledger_heap select g, md5(g::text) from generate_series(1, 20000) g", "checkpoint")
    try:
        path = _source_sql("select pg_relation_filepath('ledger_heap')")[0][0]
        cli("backup.run", "--type", "incr", check_rc=0, timeout=300)
        report = _drill_with_a_page_scribbled(state, tmp_path, path, "--thorough")
        detail = next(c["detail"] for c in report["checks"] if c["id"] == "check_amcheck")
        assert re.search(r"B-tree indexes and \d+ tables: public\.ledger_heap: invalid page in block 1 ", detail), detail
        assert report["amcheck"]["corrupt_relations"] == ["public.ledger_heap"]
        assert {k: report["amcheck"][k] for k in ("profile", "heap", "heapallindexed")} == {
            "profile": "thorough", "heap": True, "heapallindexed": True}
    finally:
        _source_sql("drop table if exists ledger_heap")


def test_the_drills_copy_replays_fast_and_can_never_be_cut_over_to(cli, state):
    """The scratch copy runs with fsync, full_page_writes and synchronous_commit off and the report
    says so; pitr.cutover refuses it; pgBackRest restored it with backup.restore_process_max
    processes; a pitr.restore copy keeps the safe settings."""
    proc = cli("dr.drill", "--keep", "--json", "--set", "backup.restore_process_max=3", timeout=300, check_rc=0)
    report = json.loads(proc.stdout)
    assert report["fast_replay"] == {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}
    assert report["restore_process_max"] == 3
    with psycopg.connect(report["kept"]["dsn"], connect_timeout=5) as conn:
        shown = {name: conn.execute(f"show {name}").fetchone()[0] for name in report["fast_replay"]}
    assert shown == report["fast_replay"]
    md = (state / "reports" / f"dr-drill-{report['run_id']}.md").read_text()
    assert ("- Started with fsync=off, full_page_writes=off, synchronous_commit=off for a fast replay: a throw-away"
            " copy that must never serve the application") in md
    assert "- pgBackRest restore with 3 processes" in md
    log = (state / "pgbackrest" / "log").glob("*restore*.log")
    began = [ln for path in log for ln in path.read_text().splitlines() if "restore command begin" in ln]
    assert "--process-max=3" in began[-1]

    refused = cli("pitr.cutover", "--env", "local", report["restored_name"])
    assert refused.returncode == 2 and "a drill's throw-away copy, started with fsync=off" in refused.stderr
    assert "Traceback" not in refused.stderr and "inv pitr.restore" in refused.stderr

    target = report["target_time"]
    cli("pitr.restore", "--target-time", target, "--name", "safe-copy", "--json", timeout=300, check_rc=0)
    try:
        copy = json.loads((state / "pg" / "restores" / "safe-copy" / "restore.json").read_text())
        assert copy["fast_replay"] is None
        with psycopg.connect(copy["dsn"], connect_timeout=5) as conn:
            assert conn.execute("show full_page_writes").fetchone()[0] == "on"
            assert conn.execute("show synchronous_commit").fetchone()[0] == "on"
    finally:
        cli("pitr.discard", "--env", "local", "safe-copy", timeout=120)
