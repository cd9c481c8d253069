"""The RDS restore flow against the moto server, and verification against a real PostgreSQL.

Where moto differs from AWS (so these tests prove the wiring, not RDS's behaviour):
- RestoreDBInstanceToPointInTime ignores RestoreTime (and accepts RestoreTime together with
  UseLatestRestorableTime): the restore window is checked in our code and tested with Stubber
  in tests/unit/test_rds_validation.py.
- A restored instance is "available" at once, with no "creating"/"backing-up" states, so the
  db_instance_available waiter passes on its first poll; waiter timeouts and failure states are
  covered with Stubber too.
- LatestRestorableTime is "now" at every describe, and describe_db_instance_automated_backups has
  no RestoreWindow, so the earliest restorable time is derived from the retention period.
- The restored instance's endpoint resolves nowhere: ``rds.endpoint_map`` maps it to a local
  PostgreSQL cluster, which is how the drill's verification runs for real in tests.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from aep_ops import config
from aep_ops.aws import client
from aep_ops.base.errors import UsageError
from aep_ops.pg.connect import connect
from aep_ops.db.backends.rds_facts import (
    TAG_CREATED_BY, check_backups, endpoint_for_verification, source_facts, utcnow, validate_restore_request,
    verification_params,
)
from aep_ops.db.backends.rds_cutover import point_route53, point_secret, undo_route53, undo_secret
from aep_ops.db.backends.rds_restore import delete_restored, restore_to_new_instance, restored_instances
from tests.conftest import write_config

SOURCE = "aep-staging"
NEW = "aep-staging-drill-1"


@pytest.fixture
def aws(moto_account, monkeypatch, tmp_path):
    """Settings for 'staging' pointed at this test's own, empty moto account; clients come from our
    own factory."""
    for name, value in moto_account.environ.items():
        monkeypatch.setenv(name, value)
    write_config(tmp_path / "aws.yaml", (
        "environments:\n"
        "  staging:\n"
        f"    aws: {{region: {moto_account.region}, endpoint_url: '{moto_account.endpoint_url}'}}\n"
        f"    rds: {{instance_id: {SOURCE}, retention_days: 7}}\n"), monkeypatch)
    return config.load("staging")


@pytest.fixture
def source(aws):
    """A PostgreSQL source instance in its own subnet group, security group and parameter group."""
    ec2, rds = client(aws, "ec2", max_attempts=1), client(aws, "rds", max_attempts=1)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=f"eu-west-1{az}")
               ["Subnet"]["SubnetId"] for i, az in ((1, "a"), (2, "b"))]
    sg = ec2.create_security_group(GroupName="aep-db", Description="AEP database", VpcId=vpc)["GroupId"]
    rds.create_db_subnet_group(DBSubnetGroupName="aep-db-private", DBSubnetGroupDescription="AEP DB subnets",
                               SubnetIds=subnets)
    rds.create_db_parameter_group(DBParameterGroupName="aep-postgres15", DBParameterGroupFamily="postgres15",
                                  Description="AEP PostgreSQL 15")
    rds.create_db_instance(
        DBInstanceIdentifier=SOURCE, DBInstanceClass="db.t4g.medium", Engine="postgres", EngineVersion="15.5",
        MasterUsername="aep_admin", MasterUserPassword="not-a-real-password", AllocatedStorage=20,
        BackupRetentionPeriod=7, DBSubnetGroupName="aep-db-private", VpcSecurityGroupIds=[sg],
        DBParameterGroupName="aep-postgres15", Tags=[{"Key": "app", "Value": "aep"}],
        StorageType="io1", Iops=3000, PubliclyAccessible=False, EnableIAMDatabaseAuthentication=True)
    return {"rds": rds, "sg": sg, "settings": aws}


def count_restore_calls(rds) -> list:
    calls: list = []
    rds.meta.events.register("provide-client-params.rds.RestoreDBInstanceToPointInTime", lambda **kw: calls.append(kw))
    return calls


def restore(rds, run_id: str = "run-1"):
    facts = source_facts(rds, SOURCE)
    target = validate_restore_request(facts, use_latest=True, now=utcnow())
    return facts, restore_to_new_instance(rds, facts, new_id=NEW, target_time=target, run_id=run_id,
                                          wait_timeout=10, wait_delay=1)


def test_facts_restore_resume_list_and_cleanup(source):
    rds, sg = source["rds"], source["sg"]
    facts = source_facts(rds, SOURCE)
    assert (facts.engine, facts.backup_retention_days, facts.status) == ("postgres", 7, "available")
    assert facts.db_subnet_group_name == "aep-db-private" and facts.vpc_security_group_ids == (sg,)
    assert facts.db_parameter_group_name == "aep-postgres15" and facts.tags == {"app": "aep"}
    assert facts.earliest_from == "retention", "moto's automated backups carry no RestoreWindow"
    assert check_backups(facts, required_retention_days=7) == []
    assert "policy requires at least 30" in check_backups(facts, required_retention_days=30)[0]

    calls = count_restore_calls(rds)
    _, first = restore(rds)
    assert first.changed is True and first.status == "available" and first.endpoint is not None
    made = rds.describe_db_instances(DBInstanceIdentifier=NEW)["DBInstances"][0]
    tags = {t["Key"]: t["Value"] for t in made["TagList"]}
    assert tags[TAG_CREATED_BY] == "aep-ops" and tags["aep-ops:source"] == SOURCE
    assert tags["aep-ops:run-id"] == "run-1" and tags["aep-ops:target-time"] == first.target_time
    assert made["DBSubnetGroup"]["DBSubnetGroupName"] == "aep-db-private"
    assert [g["DBParameterGroupName"] for g in made["DBParameterGroups"]] == ["aep-postgres15"]
    assert [g["VpcSecurityGroupId"] for g in made["VpcSecurityGroups"]] == [sg]
    assert made["DeletionProtection"] is False and made["CopyTagsToSnapshot"] is True
    sent = calls[0]["params"]  # what RDS was asked for (moto copies some of it from the source anyway)
    assert (sent["PubliclyAccessible"], sent["MultiAZ"], sent["EnableIAMDatabaseAuthentication"]) == (False, False, True)
    assert (sent["StorageType"], sent["Iops"]) == ("io1", 3000) and "UseLatestRestorableTime" not in sent
    assert made["PubliclyAccessible"] is False and made["StorageType"] == "io1"

    # Resume after a kill: same source and target -> the same instance, no second RestoreDBInstance call.
    facts2 = source_facts(rds, SOURCE)
    same_target = datetime.fromisoformat(first.target_time)
    again = restore_to_new_instance(rds, facts2, new_id=NEW, target_time=same_target, run_id="run-1",
                                    wait_timeout=10, wait_delay=1)
    assert (again.instance_id, again.changed, len(calls)) == (NEW, False, 1)
    # A different target into the same id is refused (moto would happily ignore the time).
    with pytest.raises(UsageError, match="already holds another restore"):
        restore_to_new_instance(rds, facts2, new_id=NEW, target_time=facts2.earliest_restorable_time, run_id="run-2")

    rds.create_db_instance(DBInstanceIdentifier="reporting", DBInstanceClass="db.t4g.micro", Engine="postgres",
                           MasterUsername="r", MasterUserPassword="not-a-real-password", AllocatedStorage=20)
    assert [r.instance_id for r in restored_instances(rds)] == [NEW]
    assert [r.instance_id for r in restored_instances(rds, source_id="other")] == []

    with pytest.raises(UsageError, match=f"refusing to delete RDS instance {SOURCE}"):
        delete_restored(rds, SOURCE)
    with pytest.raises(UsageError, match="refusing to delete RDS instance reporting"):
        delete_restored(rds, "reporting")
    assert delete_restored(rds, NEW, wait=True, wait_timeout=10, wait_delay=1) is True
    assert delete_restored(rds, NEW) is False, "already gone: unchanged"
    left = {i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]}
    assert left == {SOURCE, "reporting"}, "the source and foreign instances are untouched"


def test_verification_runs_over_psycopg_at_the_mapped_endpoint(source, pg_cluster_factory, tmp_path, monkeypatch,
                                                               state_dir):
    """The hook the drill uses: the restored id maps to a real cluster; a query runs there over TCP."""
    cluster = pg_cluster_factory.make(name="rds-restored")
    cluster.sql("create role aep_admin login password 'drill-secret-42'")
    cluster.sql("create database aep owner aep_admin")
    cluster.sql("create table sentinel (id int primary key, note text)", dbname="aep")
    cluster.sql("insert into sentinel values (1, 'restored')", dbname="aep")
    cluster.sql("alter table sentinel owner to aep_admin", dbname="aep")
    monkeypatch.setenv("AEP_TEST_RDS_PASSWORD", "drill-secret-42")
    write_config(tmp_path / "verify.yaml", (
        "environments:\n"
        "  staging:\n"
        f"    aws: {{region: eu-west-1, endpoint_url: '{source['settings'].env['aws']['endpoint_url']}'}}\n"
        f"    rds: {{instance_id: {SOURCE}, master_user: aep_admin, dbname: aep,\n"
        "          master_password: 'env:AEP_TEST_RDS_PASSWORD',\n"
        f"          endpoint_map: {{{NEW}: '127.0.0.1:{cluster.port}'}}}}\n"), monkeypatch)
    settings = config.load("staging")

    _, restored = restore(client(settings, "rds", max_attempts=1))
    assert restored.endpoint.host.startswith(f"{NEW}.")  # moto's fake DNS name: unreachable
    target = endpoint_for_verification(settings, restored.instance_id, restored.endpoint)
    assert (target.host, target.port, target.mapped) == ("127.0.0.1", cluster.port, True)
    params = verification_params(settings, target)
    assert "sslmode" not in params, "a mapped test endpoint has no TLS"
    with connect(params) as conn:
        row = conn.execute("select current_user, current_database(), note, inet_server_port() from sentinel").fetchone()
    assert row == ("aep_admin", "aep", "restored", cluster.port)
    assert "drill-secret-42" not in (state_dir / "logs" / "aep-ops.jsonl").read_text()


def test_route53_cutover_round_trip(aws):
    route53 = client(aws, "route53", max_attempts=1)
    zone = route53.create_hosted_zone(Name="aep.internal", CallerReference="aep-test")["HostedZone"]["Id"]
    route53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": "db.aep.internal", "Type": "CNAME", "TTL": 300,
                              "ResourceRecords": [{"Value": "aep-staging.abc.eu-west-1.rds.amazonaws.com"}]}}]})

    change = point_route53(route53, zone, "db.aep.internal", "aep-staging-drill-1.abc.eu-west-1.rds.amazonaws.com",
                           wait_delay=1)
    assert change.changed and change.previous == "aep-staging.abc.eu-west-1.rds.amazonaws.com"
    assert change.previous_ttl == 300 and change.ttl == 60
    record = _cname(route53, zone)
    assert (record["ResourceRecords"][0]["Value"], record["TTL"]) == (change.current, 60)
    assert not point_route53(route53, zone, "db.aep.internal.", change.current, wait_delay=1).changed

    undone = undo_route53(route53, change)
    assert undone.changed and _cname(route53, zone)["ResourceRecords"][0]["Value"] == change.previous
    assert _cname(route53, zone)["TTL"] == 300


def test_secret_cutover_round_trip_keeps_the_password_out_of_the_report(aws):
    sm = client(aws, "secretsmanager", max_attempts=1)
    old = {"host": "aep-staging.abc.eu-west-1.rds.amazonaws.com", "port": 5432, "dbname": "aep",
           "username": "aep_app", "password": "app-pass-9000"}
    sm.create_secret(Name="aep/staging/db", SecretString=json.dumps(old))

    change = point_secret(sm, "aep/staging/db", {"host": "aep-staging-drill-1.abc.eu-west-1.rds.amazonaws.com"})
    assert change.changed and change.previous == {"host": old["host"]}
    assert "app-pass-9000" not in repr(change)
    now = json.loads(sm.get_secret_value(SecretId="aep/staging/db")["SecretString"])
    assert now == {**old, "host": "aep-staging-drill-1.abc.eu-west-1.rds.amazonaws.com"}, "other fields kept"
    assert not point_secret(sm, "aep/staging/db", {"host": now["host"]}).changed

    undone = undo_secret(sm, change)
    assert undone.changed and json.loads(sm.get_secret_value(SecretId="aep/staging/db")["SecretString"]) == old
    with pytest.raises(UsageError, match="changed again after the cutover"):
        undo_secret(sm, change)  # its version is no longer current: never clobber a later change

    rotated = point_secret(sm, "aep/staging/db", {"password": "rotated-pass-1"})
    assert rotated.previous == {"password": "****"} and rotated.current == {"password": "****"}


def _cname(route53, zone):
    sets = route53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return next(s for s in sets if s["Name"] == "db.aep.internal." and s["Type"] == "CNAME")
