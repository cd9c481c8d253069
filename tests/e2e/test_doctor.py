"""doctor through the CLI: a table of checks, one fix per problem, exit 5 when something is wrong."""

from __future__ import annotations

import re


def test_doctor_prints_a_table_and_a_fix_per_problem(cli, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("environments:\n  dev:\n    endpoints: {api: 'http://127.0.0.1:9'}\n"
                    "    database: {password: 'env:AEP_UNSET_PW'}\n")
    proc = cli("doctor", "--env", "dev", env={"AEP_OPS_CONFIG": str(conf)})
    assert proc.returncode == 5, proc.stderr
    assert re.search(r"ok\s+pgbackrest\s+2\.\d+", proc.stdout)
    assert re.search(r"FAIL api\s+127\.0\.0\.1:9", proc.stdout)
    assert "environment variable AEP_UNSET_PW is not set" in proc.stdout
    # the api endpoint, the secret, and dev's local source and backups (never set up here)
    assert proc.stdout.count("fix:") == 4
    assert re.search(r"FAIL source\s+no source cluster at .*\n\s+fix: `inv db.setup --env dev`", proc.stdout)


def test_doctor_on_a_fresh_machine_names_db_setup_and_nothing_else(cli):
    """A machine where nothing was set up is not ready for pitr.restore: doctor says so, with the
    one command that fixes it (a ready machine passes: tests/e2e/test_doctor_env.py)."""
    proc = cli("doctor")
    assert proc.returncode == 5
    failed = re.findall(r"^  FAIL (\S+)", proc.stdout, re.M)
    assert failed == ["source", "backups"]
    assert proc.stdout.count("fix: `inv db.setup --env local`") == 2
