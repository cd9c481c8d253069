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
    assert proc.stdout.count("fix:") == 2
    assert cli("doctor", check_rc=0).stdout.strip().endswith("all checks passed")
