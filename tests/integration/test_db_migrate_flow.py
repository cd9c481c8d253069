"""db.migrate's whole run against real PostgreSQL 15 and pgBackRest: approval in production,
idempotence, the restore point, the down migration, --plan, invalid indexes, --rehearse on a
restored copy, and no password in anything it writes."""

from __future__ import annotations

import json
import re

import pytest

from tests.support.migrate_source import Migrations, source_dsn, sql

pytestmark = pytest.mark.slow
STEPS = ["pending_migrations", "preflight", "ensure_recent_backup", "record_restore_point", "rehearse_migration",
         "run_migration", "verify_migration"]


def _result(proc) -> dict:
    return json.loads(proc.stdout)


def _statuses(result: dict) -> dict[str, str]:
    return {s["step_id"]: s["status"] for s in result["steps"]}


def _orders_migrations(mig: Migrations) -> None:
    mig.up("001_orders.sql", "set lock_timeout = '2s';\ncreate table if not exists mig_orders"
                             " (id bigint generated always as identity primary key, total bigint);")
    mig.up("002_orders_total_idx.sql", "set lock_timeout = '2s';\ncreate index concurrently if not exists"
                                       " mig_orders_total on mig_orders (total);")
    mig.down("001_orders.sql", "drop table if exists mig_orders;")
    mig.down("002_orders_total_idx.sql", "drop index concurrently if exists mig_orders_total;")


def test_approval_then_apply_once_then_down_once(source, cli, tmp_path, monkeypatch):
    mig = Migrations(tmp_path, monkeypatch, "flow")
    _orders_migrations(mig)
    mig.config(verify=["select to_regclass('mig_orders_total') is not null"])

    prod = cli("db.migrate", "--set", "production=true", "--json", check_rc=4)
    assert "step record_restore_point would change production" in prod.stderr + prod.stdout
    assert mig.applied(source) == []
    planned = _result(cli("db.migrate", "--set", "production=true", "--plan", "--json", check_rc=0))  # only looks
    assert _statuses(planned)["run_migration"] == "unchanged" and mig.applied(source) == []

    first = _result(cli("db.migrate", "--json", check_rc=0))
    assert _statuses(first)["run_migration"] == "changed" and _statuses(first)["verify_migration"] == "unchanged"
    assert first["outputs"]["run_migration"]["applied"] == ["001_orders.sql", "002_orders_total_idx.sql"]
    point = first["restore_point"]
    assert point["lsn"] and point["restore_command"] == f"inv pitr.restore --target-time {point['time']}"
    assert first["squawk"] == "ran" and not [f for f in first["lint"] if f.startswith("error")]
    assert [n for n, _ in mig.applied(source)] == ["001_orders.sql", "002_orders_total_idx.sql"]

    second = _result(cli("db.migrate", "--json", check_rc=0))
    assert _statuses(second) == {**{s: "unchanged" for s in STEPS}}
    assert second["outputs"]["pending_migrations"]["summary"] == "nothing to migrate"

    down = _result(cli("db.migrate", "--down", "001_orders.sql", "--json", check_rc=0))
    assert down["outputs"]["run_migration"]["applied"] == ["002_orders_total_idx.sql", "001_orders.sql"]
    assert sql(source, "select to_regclass('mig_orders')") == [(None,)] and mig.applied(source) == []
    again = _result(cli("db.migrate", "--down", "001_orders.sql", "--json", check_rc=0))
    assert _statuses(again)["run_migration"] == "unchanged"


def test_plan_changes_nothing_and_shows_sql_and_lint(source, cli, tmp_path, monkeypatch):
    mig = Migrations(tmp_path, monkeypatch, "plan")
    mig.up("001_users_idx.sql", "create index plan_users_created on users (created_at);")
    mig.config()
    before = sql(source, "select pg_current_wal_lsn() is not null")  # the source answers
    plan = _result(cli("db.migrate", "--plan", "--json", check_rc=0))
    assert any("error 001_users_idx.sql: create-index-not-concurrently" in f for f in plan["lint"]), plan["lint"]
    assert any("lock-timeout-not-set" in f for f in plan["lint"])
    assert any("require-concurrent-index-creation" in f for f in plan["lint"])  # squawk's
    assert "create index plan_users_created on users (created_at)" in plan["sql"]
    assert plan["preflight"] == ["passed"] and "restore_point" not in plan
    assert set(_statuses(plan).values()) == {"unchanged"}
    assert sql(source, "select to_regclass('plan_users_created')") == [(None,)]
    assert sql(source, "select to_regclass(%s)", (mig.ledger,)) == [(None,)] and before
    text = cli("db.migrate", "--plan", check_rc=0).stdout
    assert "create-index-not-concurrently" in text and "sql: -- 001_users_idx.sql" in text

    planned = cli("db.migrate", "--dry-run", check_rc=0).stdout
    assert "would change: apply 001_users_idx.sql" in planned and "would change: record now()" in planned

    refused = _result(cli("db.migrate", "--json", check_rc=1))
    assert "1 lint error(s), nothing was changed" in refused["error"]
    assert sql(source, "select to_regclass('plan_users_created')") == [(None,)]


def test_failed_concurrent_index_is_reported_invalid(source, cli, tmp_path, monkeypatch):
    """A unique CREATE INDEX CONCURRENTLY over duplicates fails and leaves an invalid index: the
    failure names it; a run that skips it (IF NOT EXISTS) is caught by verification (exit 5)."""
    sql(source, "create table dup_t (v int); insert into dup_t values (1), (1)")
    mig = Migrations(tmp_path, monkeypatch, "invalid")
    mig.up("001_unique_v.sql", "set lock_timeout = '2s';\n"
                               "create unique index concurrently if not exists dup_t_v on dup_t (v);")
    mig.config()
    try:
        failed = _result(cli("db.migrate", "--json", check_rc=1))
        error = {s["step_id"]: s for s in failed["steps"]}["run_migration"]["error"]
        assert "001_unique_v.sql failed: could not create unique index" in error and "[23505]" in error
        assert "it left invalid index(es) public.dup_t_v on dup_t" in error
        verified = _result(cli("db.migrate", "--json", check_rc=5))
        assert verified["status"] == "verification_failed"
        assert verified["invalid_indexes"] == ["public.dup_t_v on dup_t"]
    finally:
        sql(source, "drop index if exists dup_t_v")


def test_rehearse_on_a_restored_copy_reports_locks_and_discards_it(source, cli, tmp_path, monkeypatch):
    mig = Migrations(tmp_path, monkeypatch, "rehearse")
    mig.up("001_flag.sql", "set lock_timeout = '2s';\nalter table users add column if not exists rehearsed boolean;")
    mig.config()
    result = _result(cli("db.migrate", "--rehearse", "--json", check_rc=0, timeout=300))
    rehearsal = result["outputs"]["rehearse_migration"]
    assert rehearsal["applied"] == ["001_flag.sql"]
    assert "AccessExclusiveLock on users" in rehearsal["locks"], rehearsal
    assert json.loads(cli("pitr.list", "--json", check_rc=0).stdout) == [], "the copy was discarded"
    assert result["outputs"]["run_migration"]["applied"] == ["001_flag.sql"]
    print(f"\nrehearsal: {rehearsal}")


def test_no_password_in_output_journal_or_logs(source, cli, tmp_path, monkeypatch):
    password = "Mig-Pw-4f1c9e"
    mig = Migrations(tmp_path, monkeypatch, "secret")
    mig.up("001_t.sql", "set lock_timeout = '2s';\ncreate table if not exists secret_t (id int);")
    mig.config(dsn="env:MIGRATE_DSN")
    good = f"{source_dsn(source)} password={password}"
    bad = re.sub(r"port=\d+", "port=1", good)  # nothing listens there: the error must not echo the DSN
    outputs = []
    for dsn, rc in ((good, 0), (bad, 1)):
        monkeypatch.setenv("MIGRATE_DSN", dsn)
        proc = cli("db.migrate", "--json", check_rc=rc)
        outputs.append(proc.stdout + proc.stderr)
        proc = cli("db.migrate", "--plan", check_rc=rc)
        outputs.append(proc.stdout + proc.stderr)
    assert "cannot connect to PostgreSQL" in outputs[2]
    written = [p.read_text(errors="replace") for p in source.rglob("*")
               if p.is_file() and p.suffix in (".log", ".jsonl", ".json") and "pgbackrest" not in p.parts]
    journal = (source / "journal.sqlite3").read_bytes().decode(errors="replace")
    for text in [*outputs, *written, journal]:
        assert password not in text


def test_preflight_refuses_a_held_migration_lock_and_a_long_transaction(source, cli, tmp_path, monkeypatch):
    import time

    from tests.support.migrate_source import connect

    mig = Migrations(tmp_path, monkeypatch, "preflight")
    mig.up("001_t.sql", "set lock_timeout = '2s';\ncreate table if not exists preflight_t (id int);")
    mig.config(long_transaction_seconds=1)
    with connect(source, application_name="test-old-tx") as other:
        other.execute("select pg_advisory_lock(7241865325823964)")  # node-pg-migrate's lock, as it holds it
        other.autocommit = False
        other.execute("select 1")  # and a transaction left open
        pid = other.info.backend_pid
        deadline = time.monotonic() + 10
        while not sql(source, "select now() - xact_start > interval '1.2 s' from pg_stat_activity where pid = %s",
                      (pid,))[0][0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        refused = _result(cli("db.migrate", "--json", check_rc=1))
        other.rollback()
    error = refused["error"]
    assert f"migration advisory lock 7241865325823964 is held by pid {pid}" in error, error
    assert f"long transaction (> 1 s): pid {pid} (postgres test-old-tx, idle in transaction" in error
    assert "nothing was changed" in error and mig.applied(source) == []
    assert _statuses(refused) == {"pending_migrations": "unchanged", "preflight": "failed"}  # stopped there
