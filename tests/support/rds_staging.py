"""An RDS "staging" for the pitr.* tests on the RDS backend (test_pitr_restore_rds.py,
test_pitr_cutover_rds.py): a source instance and a Route 53 zone in the test's own moto account,
and one real, seeded PostgreSQL that ``rds.endpoint_map`` points every instance at (moto
restores no data and its endpoints resolve nowhere). The ``rds_source`` fixture in
tests/integration/conftest.py makes one per test."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aep_ops.pg.schema import seed

SOURCE = "aep-staging"
MASTER_PASSWORD = "rds-canary-pass-7"
RECORD = "db.aep.internal."


@dataclass
class RdsSource:
    aws: Any  # the test's own moto account (aep_ops.testing.moto.MotoServer)
    cluster: Any  # the PostgreSQL every instance maps to (aep_ops.testing.postgres.TestCluster)
    rds: Any
    route53: Any
    zone: str

    @property
    def where(self) -> str:
        return f"127.0.0.1:{self.cluster.port}"

    def endpoint(self, instance_id: str) -> dict:
        return self.rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"][0]["Endpoint"]

    def point_record(self, value: str) -> None:
        """The application's CNAME (TTL 300) points at ``value``."""
        self.route53.change_resource_record_sets(HostedZoneId=self.zone, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {"Name": RECORD, "Type": "CNAME", "TTL": 300,
                                                      "ResourceRecords": [{"Value": value}]}}]})

    def record(self) -> dict:
        return next(r for r in self.route53.list_resource_record_sets(HostedZoneId=self.zone)["ResourceRecordSets"]
                    if r["Name"] == RECORD)

    def configure(self, path: Path, *, endpoint_map: dict[str, str], cutover: dict[str, str]) -> dict[str, str]:
        """Write the staging config (``rds.endpoint_map``, ``rds.cutover``) and return the CLI's env."""
        mapping = ", ".join(f"'{k}': '{v}'" for k, v in endpoint_map.items())
        moves = ", ".join(f"{k}: '{v}'" for k, v in {"route53_zone_id": self.zone, "record_name": RECORD.rstrip("."),
                                                       **cutover}.items())
        path.write_text(
            "environments:\n  staging:\n"
            f"    aws: {{region: {self.aws.region}, endpoint_url: '{self.aws.endpoint_url}'}}\n"
            f"    rds: {{instance_id: {SOURCE}, master_user: aep_admin, dbname: aep, retention_days: 7,\n"
            "          master_password: 'env:AEP_RDS_PW',\n"
            f"          endpoint_map: {{{mapping}}},\n"
            f"          cutover: {{{moves}}}}}\n")
        return {**self.aws.environ, "AEP_OPS_CONFIG": str(path), "AEP_RDS_PW": MASTER_PASSWORD}

    def restorable_target(self, timeout: float = 30) -> str:
        """A target time after the source's creation (moto's earliest restorable time) that is
        already in the past, once the clock has passed it."""
        created = self.rds.describe_db_instances(DBInstanceIdentifier=SOURCE)["DBInstances"][0]["InstanceCreateTime"]
        target = created.astimezone(timezone.utc) + timedelta(seconds=1)
        deadline = time.monotonic() + timeout
        while datetime.now(timezone.utc) <= target + timedelta(seconds=0.5):
            assert time.monotonic() < deadline, f"the clock never passed {target.isoformat()}"
            time.sleep(0.05)
        return target.isoformat()

    def put_app_secret(self, secret_id: str, password: str) -> None:
        """The application's connection secret, pointing at the source instance."""
        original = self.endpoint(SOURCE)
        self.aws.client("secretsmanager").create_secret(Name=secret_id, SecretString=json.dumps({
            "host": original["Address"], "port": original["Port"], "username": "aep_app", "password": password}))


def make_rds_source(aws: Any, cluster: Any) -> RdsSource:
    """Seed ``cluster`` as the source's data and create the source instance and the zone in ``aws``."""
    cluster.sql("create database aep")
    cluster.sql(f"create role aep_admin login superuser password '{MASTER_PASSWORD}'")
    with cluster.cluster.connect("aep") as conn:
        seed(conn, scale=1)
    rds = aws.client("rds")
    rds.create_db_instance(DBInstanceIdentifier=SOURCE, DBInstanceClass="db.t4g.medium", Engine="postgres",
                           EngineVersion="15.5", MasterUsername="aep_admin", MasterUserPassword="x" * 12,
                           AllocatedStorage=20, BackupRetentionPeriod=7)
    route53 = aws.client("route53")
    zone = route53.create_hosted_zone(Name="aep.internal.", CallerReference=f"aep-ops-{aws.account_id}")
    return RdsSource(aws=aws, cluster=cluster, rds=rds, route53=route53, zone=zone["HostedZone"]["Id"])
