"""pitr.restore and dr.drill on the RDS backend, through the CLI, against the moto server.

moto restores no data (it ignores RestoreTime and creates an empty shell whose endpoint
resolves nowhere), so ``rds.endpoint_map`` points the source and every restored instance at
one real local PostgreSQL cluster. The RDS API flow (facts, validation, restore, tags,
waiters, delete) runs against moto; every check runs for real over psycopg. Because the
"restored" database is then the source itself, the drill's marker check must fail: that
proves the checks look at data, not at API responses.
"""

from __future__ import annotations

import json

import pytest

from tests.support.rds_staging import MASTER_PASSWORD, SOURCE


@pytest.fixture
def staging(rds_source, tmp_path, local_env):
    """The source's CNAME points at its old name; every instance maps to the one real cluster."""
    rds_source.point_record("aep-staging.example.internal")
    where = rds_source.where
    env = rds_source.configure(tmp_path / "staging.yaml", endpoint_map={SOURCE: where, "drill-*": where,
                                                                        "pitr-*": where}, cutover={})
    return {"env": env, "rds": rds_source.rds, "route53": rds_source.route53, "zone": rds_source.zone,
            "source": rds_source}


def ours(rds):
    out = []
    for instance in rds.describe_db_instances()["DBInstances"]:
        tags = {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=instance["DBInstanceArn"])["TagList"]}
        if tags.get("aep-ops:created-by") == "aep-ops":
            out.append((instance["DBInstanceIdentifier"], tags))
    return out


def test_pitr_restore_on_rds_creates_a_tagged_instance_and_verifies_it(cli, staging):
    target = staging["source"].restorable_target()
    proc = cli("pitr.restore", "--env", "staging", "--target-time", target, "--name", "pitr-one", "--json",
               env=staging["env"], timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    result = json.loads(proc.stdout)
    assert [s["status"] for s in result["steps"]] == ["unchanged", "changed", "unchanged"]
    assert result["dsn"].startswith("host=") and "dbname=aep user=aep_admin" in result["dsn"]
    [(name, tags)] = ours(staging["rds"])
    assert name == "pitr-one" and tags["aep-ops:source"] == SOURCE and tags["aep-ops:run-id"] == result["run_id"]
    again = json.loads(cli("pitr.restore", "--env", "staging", "--target-time", target, "--name", "pitr-one",
                           "--json", env=staging["env"], check_rc=0).stdout)
    assert [s["status"] for s in again["steps"]] == ["unchanged"] * 3
    assert "pitr-one" in cli("pitr.list", "--env", "staging", env=staging["env"], check_rc=0).stdout
    cut = cli("pitr.cutover", "--env", "staging", "pitr-one", "--json", env=staging["env"], check_rc=0)
    change = json.loads(cut.stdout)["outputs"]["ensure_cutover"]["route53"]
    assert change["previous"] == "aep-staging.example.internal"
    record = staging["source"].record()
    endpoint = staging["rds"].describe_db_instances(DBInstanceIdentifier="pitr-one")["DBInstances"][0]["Endpoint"]
    assert record["ResourceRecords"][0]["Value"] == endpoint["Address"] and record["TTL"] == 60
    assert staging["rds"].describe_db_instances(DBInstanceIdentifier=SOURCE)["DBInstances"][0][
        "DBInstanceStatus"] == "available", "the old database is left untouched"
    refused = cli("pitr.discard", "--env", "staging", SOURCE, env=staging["env"])
    assert refused.returncode == 2 and "aep-ops" in refused.stderr, "the source is never deleted"
    cli("pitr.cutover", "--env", "staging", SOURCE, env=staging["env"], check_rc=0)  # the active one is never discarded
    cli("pitr.discard", "--env", "staging", "pitr-one", env=staging["env"], check_rc=0)
    assert ours(staging["rds"]) == []


@pytest.mark.parametrize("target, message", [
    ("2999-01-01T00:00:00Z", "is in the future"),
    ("2001-01-01T00:00:00Z", "before the earliest restorable time"),
    ("2026-11-26T09:41:00", "has no UTC offset"),
])
def test_rds_refusals_exit_2_and_create_nothing(cli, staging, target, message):
    proc = cli("pitr.restore", "--env", "staging", "--target-time", target, env=staging["env"])
    assert proc.returncode == 2 and message in proc.stderr
    assert ours(staging["rds"]) == []


def test_drill_on_rds_runs_every_check_for_real(cli, staging):
    proc = cli("dr.drill", "--env", "staging", "--json", env=staging["env"], timeout=180)
    assert proc.returncode == 5, proc.stderr[-1500:]
    report = json.loads(proc.stdout)
    checks = {c["id"]: c for c in report["checks"]}
    assert checks["check_markers"]["status"] == "failed"
    assert "marker after it PRESENT" in checks["check_markers"]["detail"]
    assert checks["check_amcheck"]["status"] == "passed" and checks["check_writable"]["status"] == "passed"
    [(name, tags)] = ours(staging["rds"])
    assert name == f"drill-{report['run_id'].lower()}" and tags["aep-ops:run-id"] == report["run_id"]
    assert MASTER_PASSWORD not in proc.stdout + proc.stderr
