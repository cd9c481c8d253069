"""pitr.cutover on RDS, both ways, through the CLI against the moto server: to a restored instance,
then back to the original; the Route 53 CNAME and the application's secret are read back after
each move. moto restores no data (see test_pitr_restore_rds.py): ``rds.endpoint_map`` points every
instance at one real local PostgreSQL so the restore's verification runs for real."""

from __future__ import annotations

import json

import pytest

from tests.support.rds_staging import SOURCE

SECRET = "aep/staging/app-db"
APP_PASSWORD = "app-canary-pass-31"


@pytest.fixture
def staging(rds_source, tmp_path, local_env):
    """The CNAME and the application's secret point at the source instance."""
    rds_source.point_record(rds_source.endpoint(SOURCE)["Address"])
    rds_source.put_app_secret(SECRET, APP_PASSWORD)
    where = rds_source.where
    env = rds_source.configure(tmp_path / "staging.yaml", endpoint_map={SOURCE: where, "pitr-*": where},
                               cutover={"secret_id": SECRET})
    return {"env": env, "rds": rds_source.rds, "source": rds_source, "sm": rds_source.aws.client("secretsmanager")}


def pointed_at(staging) -> tuple[str, dict]:
    """What the application would find now: the CNAME's value and the secret's connection fields."""
    secret = json.loads(staging["sm"].get_secret_value(SecretId=SECRET)["SecretString"])
    return staging["source"].record()["ResourceRecords"][0]["Value"], secret


def endpoint(staging, instance_id: str) -> dict:
    return staging["source"].endpoint(instance_id)


def test_cutover_to_a_restored_instance_and_back_moves_dns_and_secret_both_ways(cli, staging, local_env):
    def run(*args, **kw):
        return cli(*args, "--env", "staging", env=staging["env"], **kw)

    target = staging["source"].restorable_target()
    run("pitr.restore", "--target-time", target, "--name", "pitr-new", check_rc=0, timeout=120)

    cut = json.loads(run("pitr.cutover", "pitr-new", "--json", check_rc=0).stdout)
    assert [s["status"] for s in cut["steps"]][1] == "changed", cut["steps"]
    new = endpoint(staging, "pitr-new")
    cname, secret = pointed_at(staging)
    assert cname == new["Address"] and (secret["host"], secret["port"]) == (new["Address"], new["Port"])
    assert secret["password"] == APP_PASSWORD, "the secret's other fields are kept"
    listing = run("pitr.list", check_rc=0).stdout
    assert "(active)" in next(ln for ln in listing.splitlines() if ln.startswith("pitr-new ")), listing
    assert "the application uses pitr-new" in listing
    refused = run("pitr.discard", "pitr-new")
    assert refused.returncode == 2 and "the application uses" in refused.stderr
    assert staging["rds"].describe_db_instances(DBInstanceIdentifier=SOURCE)["DBInstances"][0][
        "DBInstanceStatus"] == "available", "the old database is left untouched"
    again = json.loads(run("pitr.cutover", "pitr-new", "--json", check_rc=0).stdout)
    assert {s["status"] for s in again["steps"]} == {"unchanged"}, "a second cutover changes nothing"

    back = json.loads(run("pitr.cutover", SOURCE, "--json", check_rc=0).stdout)
    assert {s["step_id"]: s["status"] for s in back["steps"]}["ensure_cutover"] == "changed"
    original = endpoint(staging, SOURCE)
    cname, secret = pointed_at(staging)
    assert cname == original["Address"] and (secret["host"], secret["port"]) == (original["Address"], original["Port"])
    assert f"{SOURCE:<34} source  (active)" in run("pitr.list", check_rc=0).stdout

    run("pitr.discard", "pitr-new", check_rc=0)
    assert [i["DBInstanceIdentifier"] for i in staging["rds"].describe_db_instances()["DBInstances"]] == [SOURCE]
    audit = [json.loads(ln) for ln in (local_env / "logs" / "audit.jsonl").read_text().splitlines()]
    moves = [(r["args"]["from"], r["args"]["to"]) for r in audit
             if r["action"] == "pitr.cutover:ensure_cutover" and r["result"] == "changed"]
    assert moves == [(SOURCE, "pitr-new"), ("pitr-new", SOURCE)]
    assert APP_PASSWORD not in (local_env / "logs" / "audit.jsonl").read_text()


def test_cutover_refuses_an_instance_aep_ops_did_not_restore(cli, staging):
    staging["rds"].create_db_instance(DBInstanceIdentifier="reporting", DBInstanceClass="db.t4g.micro",
                                      Engine="postgres", MasterUsername="r", MasterUserPassword="x" * 12,
                                      AllocatedStorage=20)
    proc = cli("pitr.cutover", "--env", "staging", "reporting", env=staging["env"])
    assert proc.returncode == 2 and "not restored by aep-ops" in proc.stderr
    cname, _ = pointed_at(staging)
    assert cname == endpoint(staging, SOURCE)["Address"]
