"""pitr.cutover on RDS, both ways, through the CLI against the moto server: to a restored instance,
then back to the original; the Route 53 CNAME and the application's secret are read back after
each move. moto restores no data (see test_pitr_restore_rds.py): ``rds.endpoint_map`` points every
instance at one real local PostgreSQL so the restore's verification runs for real."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from aep_ops.pg.schema import seed

SOURCE = "aep-staging"
SECRET = "aep/staging/app-db"
APP_PASSWORD = "app-canary-pass-31"


@pytest.fixture
def staging(moto_server, pg_cluster, tmp_path, local_env):
    moto_server.reset()
    pg_cluster.sql("create database aep")
    pg_cluster.sql("create role aep_admin login superuser password 'rds-canary-pass-7'")
    with pg_cluster.cluster.connect("aep") as conn:
        seed(conn, scale=1)
    rds = moto_server.client("rds")
    rds.create_db_instance(DBInstanceIdentifier=SOURCE, DBInstanceClass="db.t4g.medium", Engine="postgres",
                           EngineVersion="15.5", MasterUsername="aep_admin", MasterUserPassword="x" * 12,
                           AllocatedStorage=20, BackupRetentionPeriod=7)
    original = rds.describe_db_instances(DBInstanceIdentifier=SOURCE)["DBInstances"][0]["Endpoint"]
    r53 = moto_server.client("route53")
    zone = r53.create_hosted_zone(Name="aep.internal.", CallerReference="aep-ops-cutover")["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "UPSERT",
        "ResourceRecordSet": {"Name": "db.aep.internal.", "Type": "CNAME", "TTL": 300,
                              "ResourceRecords": [{"Value": original["Address"]}]}}]})
    sm = moto_server.client("secretsmanager")
    sm.create_secret(Name=SECRET, SecretString=json.dumps({"host": original["Address"], "port": original["Port"],
                                                           "username": "aep_app", "password": APP_PASSWORD}))
    where = f"127.0.0.1:{pg_cluster.port}"
    conf = tmp_path / "staging.yaml"
    conf.write_text(
        "environments:\n  staging:\n"
        f"    aws: {{region: {moto_server.region}, endpoint_url: '{moto_server.endpoint_url}'}}\n"
        f"    rds: {{instance_id: {SOURCE}, master_user: aep_admin, dbname: aep, retention_days: 7,\n"
        "          master_password: 'env:AEP_RDS_PW',\n"
        f"          endpoint_map: {{{SOURCE}: '{where}', 'pitr-*': '{where}'}},\n"
        f"          cutover: {{route53_zone_id: '{zone}', record_name: db.aep.internal, secret_id: '{SECRET}'}}}}\n")
    env = {**moto_server.environ, "AEP_OPS_CONFIG": str(conf), "AEP_RDS_PW": "rds-canary-pass-7"}
    yield {"env": env, "rds": rds, "route53": r53, "zone": zone, "sm": sm}
    moto_server.reset()


def pointed_at(staging) -> tuple[str, dict]:
    """What the application would find now: the CNAME's value and the secret's connection fields."""
    record = [r for r in staging["route53"].list_resource_record_sets(HostedZoneId=staging["zone"])
              ["ResourceRecordSets"] if r["Name"] == "db.aep.internal."][0]
    return record["ResourceRecords"][0]["Value"], json.loads(staging["sm"].get_secret_value(SecretId=SECRET)
                                                             ["SecretString"])


def endpoint(staging, instance_id: str) -> dict:
    return staging["rds"].describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]["Endpoint"]


def test_cutover_to_a_restored_instance_and_back_moves_dns_and_secret_both_ways(cli, staging, local_env):
    def run(*args, **kw):
        return cli(*args, "--env", "staging", env=staging["env"], **kw)

    time.sleep(1.5)  # moto: the earliest restorable time is the instance's creation
    target = (datetime.now(timezone.utc) - timedelta(seconds=0.5)).isoformat()
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
