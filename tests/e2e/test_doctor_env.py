"""doctor checks what the environment's runbooks need: the backend's keys, the source and its
archiving, a backup from the last day, AWS credentials; through the CLI, against real services."""

from __future__ import annotations

import os
import re
import stat

import pytest

from aep_ops.testing.postgres import free_port

SOURCE = "aep-staging"


@pytest.fixture
def no_aws_credentials(monkeypatch):
    """This host's own AWS setup stays out: no variables, files or instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_") and name != "AWS_CA_BUNDLE":
            monkeypatch.delenv(name)
    return {"AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-creds",
            "AWS_EC2_METADATA_DISABLED": "true"}


def rows(stdout):
    """{item: (ok, detail, fix)} from doctor's table."""
    found, last = {}, None
    for line in stdout.splitlines():
        if m := re.match(r"  (ok  |FAIL) (\S.*?)\s{2,}(.*)$", line):
            last = m.group(2)
            found[last] = (m.group(1) == "ok  ", m.group(3), None)
        elif (m := re.match(r"\s+fix: (.*)$", line)) and last:
            found[last] = (*found[last][:2], m.group(1))
    return found


def test_an_unconfigured_prod_fails_naming_the_key_pitr_restore_needs(cli, no_aws_credentials):
    proc = cli("doctor", "--env", "prod", env=no_aws_credentials)
    assert proc.returncode == 5, proc.stdout + proc.stderr
    found = rows(proc.stdout)
    ok, detail, fix = found["environments.prod.rds.instance_id"]
    assert not ok and detail == "not set" and "--set environments.prod.rds.instance_id=ID" in fix
    assert found["source"][:2] == (False, "not checked: environments.prod.rds.instance_id not set")
    assert not found["aws credentials"][0] and "aws sso login" in found["aws credentials"][2]
    assert "all checks passed" not in proc.stdout
    restore = cli("pitr.restore", "--env", "prod", "--target-time", "2026-11-26T09:41:00Z", "--dry-run",
                  env=no_aws_credentials)
    assert restore.returncode == 2 and "environments.prod.rds.instance_id" in restore.stderr, \
        "doctor names the key the runbook stops on"


def test_a_local_environment_with_no_backup_fails_the_backup_row(cli, local_env):
    proc = cli("doctor")
    assert proc.returncode == 5
    found = rows(proc.stdout)
    assert found["backups"][0] is False and "inv db.setup --env local" in found["backups"][2]
    assert found["source"][0] is False
    assert not (local_env / "pg" / "aep-source").exists(), "doctor creates nothing"


def test_a_ready_local_environment_passes_and_an_old_backup_fails(cli, source, local_env):
    ready = cli("doctor", check_rc=0)
    found = rows(ready.stdout)
    assert found["source"][0] and found["archiving"][0] and found["backups in repo1"][0]
    assert ready.stdout.strip().endswith("all checks passed")
    # Test double for the clock only (a backup cannot be made 30 hours old here): this wrapper runs
    # the real pgbackrest and moves the times `info` reports 30 hours back.
    shifted = local_env / "pgbackrest-30h-ago"
    shifted.write_text(
        "#!/usr/bin/python3\nimport json, subprocess, sys\n"
        "out = subprocess.run(['/usr/bin/pgbackrest', *sys.argv[1:]], capture_output=True, text=True)\n"
        "if out.returncode == 0 and 'info' in sys.argv and '--output=json' in sys.argv:\n"
        "    data = json.loads(out.stdout)\n"
        "    for stanza in data:\n"
        "        for b in stanza.get('backup', []):\n"
        "            b['timestamp'] = {k: v - 30 * 3600 for k, v in b['timestamp'].items()}\n"
        "    out.stdout = json.dumps(data)\n"
        "sys.stdout.write(out.stdout); sys.stderr.write(out.stderr); sys.exit(out.returncode)\n")
    shifted.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    old = cli("doctor", env={"AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__PGBACKREST_BIN": str(shifted)})
    assert old.returncode == 5, old.stdout + old.stderr
    ok, detail, fix = rows(old.stdout)["backups in repo1"]
    assert not ok and re.search(r"ended 30\.\d h ago; backups must be daily", detail)
    assert "inv backup.run --env local --repo 1 --type diff" in fix
    assert old.stdout.count("FAIL") == 1, "only the backup row fails"


@pytest.fixture
def staging(moto_account, tmp_path):
    moto_account.client("rds").create_db_instance(
        DBInstanceIdentifier=SOURCE, DBInstanceClass="db.t4g.medium", Engine="postgres", EngineVersion="15.5",
        MasterUsername="aep_admin", MasterUserPassword="x" * 12, AllocatedStorage=20, BackupRetentionPeriod=7)

    def configure(endpoint_url):
        conf = tmp_path / "staging.yaml"
        conf.write_text("environments:\n  staging:\n"
                        f"    aws: {{region: {moto_account.region}, endpoint_url: '{endpoint_url}'}}\n"
                        f"    rds: {{instance_id: {SOURCE}, retention_days: 7}}\n")
        return {**moto_account.environ, "AEP_OPS_CONFIG": str(conf)}

    return moto_account, configure


def test_rds_on_the_moto_server_resolves_credentials_and_finds_the_source(cli, staging):
    moto, configure = staging
    proc = cli("doctor", "--env", "staging", env=configure(moto.endpoint_url))
    found = rows(proc.stdout)
    ok, detail, _ = found["aws credentials"]
    assert ok and detail.startswith(f"account {moto.account_id} as arn:aws:sts::{moto.account_id}:assumed-role/")
    assert found[f"rds {SOURCE}"][:2] == (True, "available, postgres 15.5, db.t4g.medium")
    assert found["point-in-time restore"][0] and found["automated snapshots"][0]
    assert proc.returncode == 0, proc.stdout


def test_rds_with_the_endpoint_unreachable_fails_the_credentials_row_with_a_fix(cli, staging):
    _, configure = staging
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = cli("doctor", "--env", "staging", env=configure(dead), timeout=60)
    assert proc.returncode == 5
    found = rows(proc.stdout)
    ok, detail, fix = found["aws credentials"]
    assert not ok and "cannot reach the AWS sts endpoint" in detail
    assert fix.startswith(f"check that {dead} answers from this host")
    assert found[f"rds {SOURCE}" if f"rds {SOURCE}" in found else "source"][0] is False
    assert "Traceback" not in proc.stdout + proc.stderr
