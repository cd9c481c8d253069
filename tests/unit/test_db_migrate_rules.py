"""db.migrate's pure logic: statement splitting, the dry-run parser, our lint rules, the
jittered backoff's bounds, the configuration's refusals, and the tool's environment."""

from __future__ import annotations

import pytest

from aep_ops.base.errors import UsageError
from aep_ops.config import load
from aep_ops.db.migrate_config import migrate_config
from aep_ops.db.migrate_lint import own_rules
from aep_ops.db.migrate_run import backoff, command_env
from aep_ops.db.migrate_sql import Migration, parse_dry_run, split_statements


def test_split_statements_respects_quotes_dollar_quotes_and_comments():
    text = ("create table a (x text default 'a;b');\n-- c; d\ncreate function f() returns int as $body$"
            " select 1; $body$ language sql;\nselect 'it''s;' /* ; */;\n")
    assert split_statements(text) == [
        "create table a (x text default 'a;b')",
        "-- c; d\ncreate function f() returns int as $body$ select 1; $body$ language sql",
        "select 'it''s;' /* ; */"]


def test_concurrently_makes_a_migration_non_transactional():
    assert Migration("1", "alter table t add column c int;").transactional
    assert not Migration("2", "create index concurrently i on t (c);").transactional
    assert not Migration("3", "-- aep-ops: no-transaction\nvacuum t;").transactional
    assert Migration("4", "-- not concurrently\nselect 1;").transactional


NODE_PG_MIGRATE_9_DRY_RUN = """dry run
> Migrating files:
> - 1700000000000_orders
> - 1700000000001_orders_idx
### MIGRATION 1700000000000_orders (UP) ###
CREATE TABLE "npm_orders" (
  "id" serial PRIMARY KEY,
  "total" bigint
);
INSERT INTO "public"."pgmigrations" (name, run_on) VALUES ('1700000000000_orders', NOW());


### MIGRATION 1700000000001_orders_idx (UP) ###
COMMIT;
CREATE INDEX CONCURRENTLY IF NOT EXISTS "npm_orders_total_index" ON "npm_orders" ("total");
INSERT INTO "public"."pgmigrations" (name, run_on) VALUES ('1700000000001_orders_idx', NOW());
BEGIN;


Migrations complete!

#> WARNING: Need to break single transaction! <
"""  # node-pg-migrate 9.0.0 `up --dry-run`, verbatim: pgm.noTransaction() shows as COMMIT ... BEGIN


def test_real_node_pg_migrate_output_parses_and_lints_clean():
    found = parse_dry_run(NODE_PG_MIGRATE_9_DRY_RUN)
    assert [m.name for m in found] == ["1700000000000_orders", "1700000000001_orders_idx"]
    assert found[1].sql.strip().endswith("BEGIN;") and "complete" not in found[1].sql
    assert [f.rule for f in own_rules(found)] == ["lock-timeout-not-set", "lock-timeout-not-set"]


def test_node_pg_migrate_dry_run_output_is_parsed():
    out = ("> Migrating files:\n> - 1700_add_orders\n### MIGRATION 1700_add_orders (UP) ###\n"
           "CREATE TABLE orders ();\nINSERT INTO \"public\".\"pgmigrations\" (name, run_on) VALUES ('1700', NOW());\n\n"
           "### MIGRATION 1701_idx (UP) ###\nCREATE INDEX CONCURRENTLY i ON orders (id);\n")
    found = parse_dry_run(out)
    assert [m.name for m in found] == ["1700_add_orders", "1701_idx"]
    assert "CREATE INDEX CONCURRENTLY" in found[1].sql and "Migrating" not in found[0].sql
    assert parse_dry_run("No migrations to run!\nMigrations complete!\n") == []
    assert [m.name for m in parse_dry_run("ALTER TABLE t ADD c int;")] == ["dry-run output"]


@pytest.mark.parametrize("sql, rules", [
    ("create index i on users (email);", ["create-index-not-concurrently", "lock-timeout-not-set"]),
    ("set lock_timeout = '2s';\ncreate unique index if not exists i on public.users (email);",
     ["create-index-not-concurrently"]),
    ("set lock_timeout = '2s';\ncreate table t (a int);\ncreate index i on t (a);", []),
    ("set lock_timeout = '2s';\ncreate index concurrently i on users (email);", []),
    ("set lock_timeout = '2s';\nbegin;\ncreate index concurrently i on users (email);\ncommit;",
     ["concurrently-in-transaction"]),
], ids=["plain-index", "unique-qualified", "new-table", "concurrently", "concurrently-in-begin"])
def test_own_lint_rules(sql, rules):
    assert [f.rule for f in own_rules([Migration("m.sql", sql)])] == rules


def test_a_table_created_by_an_earlier_pending_migration_is_new():
    found = own_rules([Migration("1.sql", "set lock_timeout='1s'; create table t (a int);"),
                       Migration("2.sql", "set lock_timeout='1s'; create index i on t (a);")])
    assert found == []


def test_backoff_is_full_jitter_and_capped():
    assert backoff(1, 500, rand=lambda lo, hi: hi) == 0.5
    assert backoff(3, 500, rand=lambda lo, hi: hi) == 2.0
    assert backoff(20, 500, rand=lambda lo, hi: hi) == 30.0
    assert backoff(2, 500, rand=lambda lo, hi: lo) == 0.0
    assert all(0 <= backoff(4, 100) <= 0.8 for _ in range(200))


def _settings(tmp_path, monkeypatch, migrate: str):
    (tmp_path / "c.yaml").write_text("environments:\n  local:\n    migrate:\n" + migrate)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(tmp_path / "c.yaml"))
    return load("local", [f"state_dir={tmp_path}"])


def test_defaults_and_backup_age_fallback(tmp_path, monkeypatch):
    (tmp_path / "up").mkdir()
    cfg = migrate_config(_settings(tmp_path, monkeypatch, f"      sql_dir: {tmp_path / 'up'}\n"))
    assert (cfg.lock_timeout_ms, cfg.retries, cfg.migration_lock_id, cfg.ledger_table) == (
        2000, 5, 7241865325823964, "aep_ops_migrations")
    assert cfg.backup_max_age_hours == 26 and cfg.sql_dir == tmp_path / "up"


@pytest.mark.parametrize("migrate, message", [
    ("      retries: 3\n", "no migrations configured"),
    ("      command: [a]\n      sql_dir: /tmp\n", "not both"),
    ("      command: [a, '']\n", "an item is blank"),
    ("      command: [a]\n      lock_table: 'a.b.c'\n", "is not a table name"),
], ids=["none", "both", "blank", "bad-table"])
def test_config_refusals(tmp_path, monkeypatch, migrate, message):
    with pytest.raises(UsageError, match=message):
        migrate_config(_settings(tmp_path, monkeypatch, migrate))


def test_the_tool_gets_the_password_only_in_pgpassword(tmp_path, monkeypatch):
    cfg = migrate_config(_settings(tmp_path, monkeypatch, "      command: [npx, node-pg-migrate, up]\n"
                                                          "      lock_timeout_ms: 1500\n"))
    env = command_env({"host": "127.0.0.1", "port": 5432, "dbname": "aep", "user": "owner", "password": "pw-123"},
                      cfg, "aep-ops-migrate:RUN", 150004)
    assert env["PGPASSWORD"] == "pw-123"
    assert env["DATABASE_URL"] == "postgresql://owner@127.0.0.1:5432/aep?application_name=aep-ops-migrate%3ARUN"
    socket = command_env({"host": "/tmp/x/sock", "port": 54315, "dbname": "aep", "user": "postgres"}, cfg, "t")
    assert socket["DATABASE_URL"] == "postgresql://postgres@%2Ftmp%2Fx%2Fsock:54315/aep?application_name=t"
    assert env["PGOPTIONS"] == ("-c lock_timeout=1500ms -c statement_timeout=3600s"
                                " -c client_connection_check_interval=1s")
    assert env["PGAPPNAME"] == "aep-ops-migrate:RUN"
    older = command_env({"host": "h"}, cfg, "t", 130011)["PGOPTIONS"]
    assert "client_connection_check_interval" not in older  # PostgreSQL 13 would refuse the connection


def test_without_squawk_our_rules_still_run_and_say_so(monkeypatch):
    from aep_ops.db import migrate_lint

    migrations = [Migration("1.sql", "create index i on users (email);")]
    with_squawk, ran = migrate_lint.lint(migrations)
    assert ran and {f.source for f in with_squawk} == {"aep-ops", "squawk"}
    monkeypatch.setattr(migrate_lint, "squawk_path", lambda: None)
    alone, ran = migrate_lint.lint(migrations)
    assert not ran and [f.rule for f in alone] == ["create-index-not-concurrently", "lock-timeout-not-set"]
