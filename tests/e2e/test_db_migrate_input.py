"""db.migrate refuses bad input before anything is touched: exit 2, one line on stderr, no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import write_config


def _refused(proc, message: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert message in lines[0], lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def _config(tmp_path, monkeypatch, migrate: str) -> None:
    write_config(tmp_path / "aep-ops.yaml", f"environments:\n  local:\n    migrate:\n{migrate}", monkeypatch)


def test_no_migrate_section_is_one_line_exit_2(local_env, cli):
    _refused(cli("db.migrate"), "no migrations configured; set environments.local.migrate.command")


@pytest.mark.parametrize("migrate, message", [
    ("      sql_dir: {missing}\n", "migrate.sql_dir: {missing} is not a directory"),
    ("      sql_dir: relative/dir\n", "sql_dir"),
    ("      sql_dir: {dir}\n      command: [npx, node-pg-migrate, up]\n", "set command or sql_dir, not both"),
    ("      command: [npx, '  ']\n", "migrate.command: an item is blank"),
    ("      sql_dir: {dir}\n      ledger_table: 'x; drop table users'\n", "is not a table name"),
], ids=["missing-dir", "relative-dir", "both-sources", "blank-argv-item", "bad-ledger-name"])
def test_bad_migrate_config_is_one_line_exit_2(local_env, cli, tmp_path, monkeypatch, migrate, message):
    (tmp_path / "sql").mkdir()
    paths = {"missing": tmp_path / "nowhere", "dir": tmp_path / "sql"}
    _config(tmp_path, monkeypatch, migrate.format(**paths))
    _refused(cli("db.migrate"), message.format(**paths))


def test_bad_flags_are_one_line_exit_2(local_env, cli, tmp_path, monkeypatch):
    (tmp_path / "sql").mkdir()
    _config(tmp_path, monkeypatch, f"      sql_dir: {tmp_path / 'sql'}\n")
    _refused(cli("db.migrate", "--down", "  "), "--down is empty")
    _refused(cli("db.migrate", "--down", "001_x.sql"), "--down needs environments.local.migrate.down_dir")
    (tmp_path / "down").mkdir()
    _config(tmp_path, monkeypatch, f"      sql_dir: {tmp_path / 'sql'}\n      down_dir: {tmp_path / 'down'}\n")
    _refused(cli("db.migrate", "--down", "001_x.sql"), "--down '001_x.sql': no such migration in")
    _refused(cli("db.migrate", "--down", "001_x.sql", "--rehearse"), "--rehearse rehearses the up migration")
    _refused(cli("db.migrate", "--set", "migrate.lock_timeout_ms=0"), "lock_timeout_ms")
