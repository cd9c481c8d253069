"""RDS restore: facts, refusals and the exact restore request, on a real boto3 client with botocore's Stubber.

Why Stubber and not moto here: moto's RestoreDBInstanceToPointInTime ignores RestoreTime and
accepts combinations real AWS rejects (RestoreTime with UseLatestRestorableTime, a time after
LatestRestorableTime or outside the retention window), so moto cannot show that our own
checks refuse them, nor that the request we send is exactly the one we mean. Stubber checks
every parameter of every call against ``expected_params`` and botocore's model of the API.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from botocore.stub import Stubber

from aep_ops import config
from aep_ops.aws import AwsAccessDenied, AwsError, AwsTimeout, client
from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.db.backends.rds_facts import (
    Endpoint, archive_lag, check_backups, endpoint_for_verification, required_retention_days, source_facts,
    validate_restore_request,
)
from aep_ops.db.backends.rds_restore import delete_restored, restore_to_new_instance, restored_instances
from tests.conftest import write_config

UTC = timezone.utc
NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
LATEST = datetime(2026, 11, 26, 11, 55, 0, tzinfo=UTC)
EARLIEST = datetime(2026, 11, 19, 3, 12, 0, tzinfo=UTC)
SOURCE = "aep-prod"
NEW = "aep-prod-pitr-0941"
SG = ["sg-0a1b2c3d4e5f60718", "sg-0f9e8d7c6b5a40312"]
OUR_TAGS = [
    {"Key": "aep-ops:created-by", "Value": "aep-ops"},
    {"Key": "aep-ops:source", "Value": SOURCE},
    {"Key": "aep-ops:run-id", "Value": "run-20261126-1"},
    {"Key": "aep-ops:target-time", "Value": "2026-11-26T09:41:00Z"},
]


def db_instance(identifier: str = SOURCE, **overrides) -> dict:
    """A DBInstance as DescribeDBInstances returns it for a PostgreSQL 15 instance in a VPC."""
    instance = {
        "DBInstanceIdentifier": identifier,
        "DBInstanceClass": "db.r6g.large",
        "Engine": "postgres",
        "EngineVersion": "15.5",
        "DBInstanceStatus": "available",
        "MasterUsername": "aep_admin",
        "DBName": "aep",
        "Endpoint": {"Address": f"{identifier}.c9akciq32.eu-west-1.rds.amazonaws.com", "Port": 5432,
                     "HostedZoneId": "Z29XKXDKYMONMX"},
        "AllocatedStorage": 200,
        "InstanceCreateTime": datetime(2025, 3, 4, 10, 0, tzinfo=UTC),
        "PreferredBackupWindow": "03:00-03:30",
        "BackupRetentionPeriod": 7,
        "DBSecurityGroups": [],
        "VpcSecurityGroups": [{"VpcSecurityGroupId": g, "Status": "active"} for g in SG],
        "DBParameterGroups": [{"DBParameterGroupName": "aep-postgres15", "ParameterApplyStatus": "in-sync"}],
        "AvailabilityZone": "eu-west-1a",
        "DBSubnetGroup": {
            "DBSubnetGroupName": "aep-db-private", "DBSubnetGroupDescription": "AEP private DB subnets",
            "VpcId": "vpc-0123456789abcdef0", "SubnetGroupStatus": "Complete",
            "Subnets": [{"SubnetIdentifier": "subnet-0aa11bb22cc33dd44",
                         "SubnetAvailabilityZone": {"Name": "eu-west-1a"}, "SubnetStatus": "Active"},
                        {"SubnetIdentifier": "subnet-0ee55ff66aa77bb88",
                         "SubnetAvailabilityZone": {"Name": "eu-west-1b"}, "SubnetStatus": "Active"}],
        },
        "LatestRestorableTime": LATEST,
        "MultiAZ": True,
        "PubliclyAccessible": False,
        "StorageType": "gp3",
        "Iops": 12000,
        "StorageThroughput": 500,
        "OptionGroupMemberships": [{"OptionGroupName": "aep-pg15-options", "Status": "in-sync"}],
        "IAMDatabaseAuthenticationEnabled": True,
        "StorageEncrypted": True,
        "DbiResourceId": "db-ABCDEFGHIJKLMNOPQRSTUVWXY",
        "DBInstanceArn": f"arn:aws:rds:eu-west-1:111122223333:db:{identifier}",
        "CopyTagsToSnapshot": True,
        "DeletionProtection": True,
        "TagList": [{"Key": "app", "Value": "aep"}, {"Key": "env", "Value": "prod"}],
    }
    instance.update(overrides)
    return {k: v for k, v in instance.items() if v is not None}  # None: the key is absent, as in AWS's answer


def automated_backups(*entries: dict) -> dict:
    return {"DBInstanceAutomatedBackups": list(entries)}


def backup_entry(status: str = "active", dbi: str = "db-ABCDEFGHIJKLMNOPQRSTUVWXY", earliest=EARLIEST) -> dict:
    return {"DBInstanceIdentifier": SOURCE, "DbiResourceId": dbi, "Status": status, "Engine": "postgres",
            "BackupRetentionPeriod": 7, "RestoreWindow": {"EarliestTime": earliest, "LatestTime": LATEST}}


@pytest.fixture
def rds():
    import boto3

    rds = boto3.client("rds", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(rds) as stubber:
        rds.stubber = stubber
        yield rds
        stubber.assert_no_pending_responses()


def stub_facts(rds, instance: dict | None = None, backups: dict | None = None) -> None:
    instance = instance or db_instance()
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [instance]},
                             {"DBInstanceIdentifier": instance["DBInstanceIdentifier"]})
    if instance.get("BackupRetentionPeriod"):
        rds.stubber.add_response("describe_db_instance_automated_backups",
                                 backups if backups is not None else automated_backups(backup_entry()),
                                 {"DBInstanceIdentifier": instance["DBInstanceIdentifier"]})


def stub_not_found(rds, identifier: str) -> None:
    rds.stubber.add_client_error("describe_db_instances", service_error_code="DBInstanceNotFound",
                                 service_message=f"DBInstance {identifier} not found.", http_status_code=404,
                                 expected_params={"DBInstanceIdentifier": identifier})


def facts_for(rds, **overrides):
    stub_facts(rds, db_instance(**overrides))
    return source_facts(rds, SOURCE, now=NOW)


# --- facts -------------------------------------------------------------------------------------

def test_source_facts_reads_network_parameters_tags_and_restore_window(rds):
    retained = backup_entry(status="retained", dbi="db-OLDINSTANCEWITHSAMENAME0",
                            earliest=EARLIEST - timedelta(days=90))
    stub_facts(rds, backups=automated_backups(retained, backup_entry()))
    facts = source_facts(rds, SOURCE, now=NOW)
    assert facts.status == "available" and facts.engine == "postgres" and facts.engine_version == "15.5"
    assert facts.instance_class == "db.r6g.large" and facts.port == 5432
    assert facts.backup_retention_days == 7
    assert facts.latest_restorable_time == LATEST and facts.latest_restorable_time.tzinfo is not None
    assert facts.earliest_restorable_time == EARLIEST, "RDS's RestoreWindow, not the retained backup of an old namesake"
    assert facts.earliest_from == "automated-backups"
    assert facts.db_subnet_group_name == "aep-db-private"
    assert facts.vpc_security_group_ids == tuple(SG)
    assert facts.db_parameter_group_name == "aep-postgres15"
    assert facts.tags == {"app": "aep", "env": "prod"}
    assert facts.to_record()["latest_restorable_time"] == "2026-11-26T11:55:00Z"


def test_earliest_is_derived_from_retention_when_rds_does_not_say(rds):
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [db_instance()]},
                             {"DBInstanceIdentifier": SOURCE})
    rds.stubber.add_client_error("describe_db_instance_automated_backups", service_error_code="AccessDenied",
                                 http_status_code=403)
    facts = source_facts(rds, SOURCE, now=NOW)
    assert facts.earliest_restorable_time == NOW - timedelta(days=7)
    assert facts.earliest_from == "retention"


def test_earliest_is_never_before_the_instance_existed(rds):
    created = NOW - timedelta(days=2)
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [db_instance(InstanceCreateTime=created)]},
                             {"DBInstanceIdentifier": SOURCE})
    rds.stubber.add_response("describe_db_instance_automated_backups",
                             automated_backups({"DBInstanceIdentifier": SOURCE, "Status": "active"}),
                             {"DBInstanceIdentifier": SOURCE})
    assert source_facts(rds, SOURCE, now=NOW).earliest_restorable_time == created


def test_unknown_source_is_a_usage_error_naming_the_setting(rds):
    stub_not_found(rds, "aep-prdo")
    with pytest.raises(UsageError, match=r"RDS instance 'aep-prdo' not found in eu-west-1; check rds.instance_id"):
        source_facts(rds, "aep-prdo", now=NOW)


def test_archive_lag_is_now_minus_latest_restorable_time(rds):
    assert archive_lag(facts_for(rds), NOW) == timedelta(minutes=5)


# --- backups policy -----------------------------------------------------------------------------

def test_check_backups_accepts_retention_that_meets_policy(rds):
    assert check_backups(facts_for(rds), required_retention_days=7) == []


def test_check_backups_reports_disabled_backups(rds):
    stub_facts(rds, db_instance(BackupRetentionPeriod=0, LatestRestorableTime=None))
    problems = check_backups(source_facts(rds, SOURCE, now=NOW), required_retention_days=7)
    assert problems == ["automated backups are disabled on aep-prod (BackupRetentionPeriod 0): no point-in-time "
                        "restore is possible; set a retention of at least 7 days"]


def test_check_backups_reports_retention_shorter_than_policy(rds):
    problems = check_backups(facts_for(rds, BackupRetentionPeriod=3), required_retention_days=30)
    assert problems == ["aep-prod keeps automated backups for 3 day(s); the policy requires at least 30 "
                        "(rds.retention_days); raise BackupRetentionPeriod"]


def test_policy_comes_from_rds_retention_days_default_7(tmp_path, monkeypatch):
    assert required_retention_days(config.load("staging")) == 7
    write_config(tmp_path / "c.yaml", "environments: {prod: {rds: {retention_days: 30}}}\n", monkeypatch)
    assert required_retention_days(config.load("prod")) == 30


# --- refusals -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"target_time": datetime(2026, 11, 26, 9, 41, tzinfo=UTC), "use_latest": True},
     r"^give a target time or ask for the latest restorable time, not both \(RDS rejects RestoreTime together"),
    ({}, r"^give a target time \(e\.g\. --target-time 2026-11-26T09:41:00Z\) or ask for the latest"),
    ({"target_time": datetime(2026, 11, 26, 9, 41)}, r"has no UTC offset; add Z or \+HH:MM"),
    ({"target_time": NOW + timedelta(minutes=1)},
     r"^target 2026-11-26T12:01:00Z is in the future \(now 2026-11-26T12:00:00Z\); pick a time in the past$"),
    ({"target_time": LATEST + timedelta(minutes=4, seconds=12)},
     r"^target 2026-11-26T11:59:12Z is after the latest restorable time of aep-prod \(2026-11-26T11:55:00Z: "
     r"RDS's backups are 4m12s behind the target\); pick a time at or before it, or restore to the latest$"),
    ({"target_time": EARLIEST - timedelta(seconds=1)},
     r"^target 2026-11-19T03:11:59Z is before the earliest restorable time of aep-prod \(2026-11-19T03:12:00Z, "
     r"7-day retention\); nothing older is retained$"),
])
def test_validate_restore_request_refuses(rds, kwargs, message):
    facts = facts_for(rds)
    with pytest.raises(UsageError, match=message) as caught:
        validate_restore_request(facts, now=NOW, **kwargs)
    assert "\n" not in str(caught.value), "one clear line"


def test_validate_refuses_when_automated_backups_are_disabled(rds):
    stub_facts(rds, db_instance(BackupRetentionPeriod=0, LatestRestorableTime=None))
    facts = source_facts(rds, SOURCE, now=NOW)
    with pytest.raises(UsageError, match=r"automated backups are disabled on aep-prod \(BackupRetentionPeriod 0\)"):
        validate_restore_request(facts, use_latest=True, now=NOW)


def test_validate_refuses_before_the_first_backup(rds):
    facts = facts_for(rds, LatestRestorableTime=None, DBInstanceStatus="backing-up")
    with pytest.raises(UsageError, match=r"aep-prod has no restorable time yet \(status backing-up\)"):
        validate_restore_request(facts, target_time=NOW - timedelta(hours=1), now=NOW)


def test_validate_accepts_the_window_edges_and_normalises_to_utc(rds):
    facts = facts_for(rds)
    assert validate_restore_request(facts, target_time=LATEST, now=NOW) == LATEST
    assert validate_restore_request(facts, target_time=EARLIEST, now=NOW) == EARLIEST
    local = datetime(2026, 11, 26, 10, 41, tzinfo=timezone(timedelta(hours=1)))
    assert validate_restore_request(facts, target_time=local, now=NOW) == datetime(2026, 11, 26, 9, 41, tzinfo=UTC)
    assert validate_restore_request(facts, use_latest=True, now=NOW) == LATEST, "latest becomes an explicit time"


def test_latest_is_rounded_down_to_a_whole_second(rds):
    facts = facts_for(rds, LatestRestorableTime=LATEST.replace(microsecond=911144))
    assert validate_restore_request(facts, use_latest=True, now=NOW) == LATEST


# --- the restore request ------------------------------------------------------------------------

TARGET = datetime(2026, 11, 26, 9, 41, tzinfo=UTC)
EXPECTED_RESTORE = {
    "SourceDBInstanceIdentifier": SOURCE,
    "TargetDBInstanceIdentifier": NEW,
    "RestoreTime": TARGET,
    "DBInstanceClass": "db.r6g.large",
    "DBSubnetGroupName": "aep-db-private",
    "VpcSecurityGroupIds": SG,
    "DBParameterGroupName": "aep-postgres15",
    "OptionGroupName": "aep-pg15-options",
    "PubliclyAccessible": False,
    "MultiAZ": False,
    "EnableIAMDatabaseAuthentication": True,
    "StorageType": "gp3",
    "Iops": 12000,
    "StorageThroughput": 500,
    "CopyTagsToSnapshot": True,
    "DeletionProtection": False,
    "Tags": OUR_TAGS,
}


def restored(status: str = "available", tags=OUR_TAGS, **kw) -> dict:
    return db_instance(NEW, DBInstanceStatus=status, TagList=tags, DeletionProtection=False, MultiAZ=False, **kw)


def stub_statuses(rds, *statuses: str) -> None:
    """The restored instance as describe_db_instances answers it, one status per call."""
    for status in statuses:
        rds.stubber.add_response("describe_db_instances", {"DBInstances": [restored(status)]},
                                 {"DBInstanceIdentifier": NEW})


def test_restore_sends_exactly_the_expected_request_then_waits(rds):
    facts = facts_for(rds)
    stub_not_found(rds, NEW)
    creating = restored("creating")
    del creating["Endpoint"]
    rds.stubber.add_response("restore_db_instance_to_point_in_time", {"DBInstance": creating}, EXPECTED_RESTORE)
    stub_statuses(rds, "available", "available")

    result = restore_to_new_instance(rds, facts, new_id=NEW, target_time=TARGET, run_id="run-20261126-1", now=NOW)

    assert "UseLatestRestorableTime" not in EXPECTED_RESTORE  # Stubber fails on any extra parameter
    assert result.changed is True and result.status == "available"
    assert result.endpoint == Endpoint(f"{NEW}.c9akciq32.eu-west-1.rds.amazonaws.com", 5432)
    assert (result.source_id, result.target_time, result.run_id) == (SOURCE, "2026-11-26T09:41:00Z", "run-20261126-1")


def test_restore_uses_the_configured_instance_class(rds):
    facts = facts_for(rds)
    stub_not_found(rds, NEW)
    rds.stubber.add_response("restore_db_instance_to_point_in_time", {"DBInstance": restored("creating")},
                             {**EXPECTED_RESTORE, "DBInstanceClass": "db.t4g.medium"})
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [restored()]}, {"DBInstanceIdentifier": NEW})
    restore_to_new_instance(rds, facts, new_id=NEW, target_time=TARGET, run_id="run-20261126-1",
                            instance_class="db.t4g.medium", wait=False, now=NOW)


def test_restore_resumes_our_instance_without_a_second_restore(rds):
    facts = facts_for(rds)
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [restored("creating")]},
                             {"DBInstanceIdentifier": NEW})
    stub_statuses(rds, "available", "available")
    result = restore_to_new_instance(rds, facts, new_id=NEW, target_time=TARGET, run_id="run-20261126-2", now=NOW)
    assert result.changed is False and result.run_id == "run-20261126-1"


@pytest.mark.parametrize(("new_id", "existing", "message"), [
    (SOURCE, None, r"^refusing to restore aep-prod onto itself"),
    ("AEP-PROD", None, r"^refusing to restore aep-prod onto itself"),
    ("1-bad--id", None, r"is not a valid RDS instance id"),
    (NEW, [{"Key": "team", "Value": "payments"}], r"already exists and aep-ops did not create it"),
    (NEW, [*OUR_TAGS[:3], {"Key": "aep-ops:target-time", "Value": "2026-11-25T08:00:00Z"}],
     r"already holds another restore \(aep-prod at 2026-11-25T08:00:00Z, run run-20261126-1\)"),
])
def test_restore_refuses_to_overwrite(rds, new_id, existing, message):
    facts = facts_for(rds)
    if existing is not None:
        rds.stubber.add_response("describe_db_instances", {"DBInstances": [restored(tags=existing)]},
                                 {"DBInstanceIdentifier": new_id})
    with pytest.raises(UsageError, match=message):
        restore_to_new_instance(rds, facts, new_id=new_id, target_time=TARGET, run_id="r", now=NOW)


def test_restore_revalidates_the_target_right_before_the_call(rds):
    facts = facts_for(rds)
    stub_not_found(rds, NEW)
    with pytest.raises(UsageError, match="is after the latest restorable time"):
        restore_to_new_instance(rds, facts, new_id=NEW, target_time=LATEST + timedelta(seconds=1), run_id="r", now=NOW)


def test_access_denied_names_the_action_the_resource_and_the_fix(rds):
    facts = facts_for(rds)
    stub_not_found(rds, NEW)
    rds.stubber.add_client_error(
        "restore_db_instance_to_point_in_time", service_error_code="AccessDenied", http_status_code=403,
        service_message="User: arn:aws:sts::111122223333:assumed-role/aep-ops/x is not authorized to perform: "
                        "rds:RestoreDBInstanceToPointInTime", expected_params=EXPECTED_RESTORE)
    with pytest.raises(AwsAccessDenied) as caught:
        restore_to_new_instance(rds, facts, new_id=NEW, target_time=TARGET, run_id="run-20261126-1", now=NOW)
    text = str(caught.value)
    assert text.startswith("restoring aep-prod to 2026-11-26T09:41:00Z: AWS denied rds:RestoreDBInstanceToPointInTime"
                           " on aep-prod-pitr-0941 (eu-west-1, AccessDenied); check that the IAM policy")
    assert caught.value.code == "AccessDenied"


def test_waiter_failure_state_and_timeout_are_reported(rds):
    facts = facts_for(rds)
    stub_statuses(rds, "creating", "creating")
    with pytest.raises(AwsTimeout, match=r"still 'creating' after 1s; the restore continues in AWS"):
        restore_to_new_instance(rds, facts, new_id=NEW, target_time=TARGET, run_id="r", now=NOW,
                                wait_timeout=1, wait_delay=1)
    stub_statuses(rds, "creating", "incompatible-parameters")
    with pytest.raises(AwsError, match=r"entered status 'incompatible-parameters'; see `aws rds describe-events"):
        restore_to_new_instance(rds, facts, new_id=NEW, target_time=TARGET, run_id="r", now=NOW,
                                wait_timeout=60, wait_delay=1)


# --- listing and cleanup --------------------------------------------------------------------------

def test_restored_instances_lists_only_ours(rds):
    rds.stubber.add_response("describe_db_instances",
                             {"DBInstances": [db_instance(), restored(), db_instance("reporting", TagList=[])]}, {})
    assert [r.instance_id for r in restored_instances(rds)] == [NEW]


def test_delete_refuses_an_instance_we_did_not_create(rds):
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [db_instance()]},
                             {"DBInstanceIdentifier": SOURCE})
    with pytest.raises(UsageError, match=r"^refusing to delete RDS instance aep-prod: it has no tag "
                                         r"aep-ops:created-by=aep-ops, so aep-ops did not create it"):
        delete_restored(rds, SOURCE)


def test_delete_ours_without_final_snapshot_and_idempotently(rds):
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [restored()]}, {"DBInstanceIdentifier": NEW})
    rds.stubber.add_response("delete_db_instance", {"DBInstance": restored("deleting")},
                             {"DBInstanceIdentifier": NEW, "SkipFinalSnapshot": True, "DeleteAutomatedBackups": True})
    assert delete_restored(rds, NEW) is True
    rds.stubber.add_response("describe_db_instances", {"DBInstances": [restored("deleting")]},
                             {"DBInstanceIdentifier": NEW})
    assert delete_restored(rds, NEW) is False
    stub_not_found(rds, NEW)
    assert delete_restored(rds, NEW) is False


# --- verification endpoint and the client factory --------------------------------------------------

def test_endpoint_map_redirects_verification(tmp_path, monkeypatch):
    write_config(tmp_path / "c.yaml",
                 "environments: {staging: {rds: {endpoint_map: {aep-prod-pitr-0941: '127.0.0.1:55432'}}}}\n",
                 monkeypatch)
    settings = config.load("staging")
    real = Endpoint("aep-prod-pitr-0941.c9akciq32.eu-west-1.rds.amazonaws.com", 5432)
    assert endpoint_for_verification(settings, NEW, real) == Endpoint("127.0.0.1", 55432, mapped=True)
    assert endpoint_for_verification(settings, "other", real) is real
    assert endpoint_for_verification(settings, "other", ("h", 5433)) == Endpoint("h", 5433)


def test_endpoint_map_value_must_be_host_port(tmp_path, monkeypatch):
    write_config(tmp_path / "c.yaml", "environments: {staging: {rds: {endpoint_map: {x: 'localhost'}}}}\n", monkeypatch)
    with pytest.raises(ConfigError,
                       match=r"environments.staging.rds.endpoint_map.x is 'localhost'; expected host:port"):
        endpoint_for_verification(config.load("staging"), "x", ("h", 1))


def test_client_factory_bounds_retries_and_timeouts_and_honours_the_endpoint():
    rds = client({"aws": {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}}, "rds", max_attempts=1)
    assert rds.meta.region_name == "eu-west-1" and rds.meta.endpoint_url == "http://127.0.0.1:9"
    assert rds.meta.config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert rds.meta.config.connect_timeout == 5 and rds.meta.config.read_timeout == 60
    default = client({"region": "eu-west-1"}, "rds")
    assert default.meta.config.retries["total_max_attempts"] == 5


def test_client_factory_config_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match=r"aws.profile 'aep-prod-ops' is not defined"):
        client({"region": "eu-west-1", "profile": "aep-prod-ops"}, "rds")
    with pytest.raises(ConfigError, match=r"no AWS region for rds: set aws.region"):
        client({}, "rds")



def test_unreachable_endpoint_and_bad_parameters_are_translated_without_values(monkeypatch):
    from botocore.exceptions import ParamValidationError

    from aep_ops.aws import translate
    from aep_ops.base.errors import HostUnreachable

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    rds = client({"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"}, "rds", max_attempts=1)
    with pytest.raises(HostUnreachable, match=r"^describing RDS instance aep-prod: cannot reach the AWS rds endpoint "
                                              r"http://127\.0\.0\.1:9 \(EndpointConnectionError\)"):
        source_facts(rds, SOURCE)
    report = "Invalid type for parameter SecretString, value: hunter2-secret, type: <class 'int'>, valid types: str"
    error = translate(ParamValidationError(report=report), doing="writing a new version of secret aep/db", client=rds)
    assert "hunter2-secret" not in str(error) and "parameter SecretString" in str(error)


# --- waiting for the drill's sentinel to become restorable --------------------------------------

def _backend(rds):
    from types import SimpleNamespace

    from aep_ops.db.backends.rds import Backend

    backend = Backend(SimpleNamespace(env={"rds": {"instance_id": SOURCE}}, env_name="prod"))
    backend.rds = rds  # the stubbed client is the API
    return backend


def test_the_drill_waits_until_rds_can_restore_its_target(rds):
    target = LATEST + timedelta(minutes=3)
    for latest in (LATEST, LATEST + timedelta(minutes=2), target + timedelta(seconds=40)):
        stub_facts(rds, db_instance(LatestRestorableTime=latest))
    progress: list[str] = []

    _backend(rds).wait_until_restorable(target, progress.append, timeout=60, poll=0)

    assert progress == [f"waiting for RDS to make {target.isoformat()} restorable (restorable up to {t})"
                        for t in ("2026-11-26T11:55:00+00:00", "2026-11-26T11:57:00+00:00")]


def test_a_target_rds_never_reaches_fails_the_step_with_what_to_check(rds):
    from aep_ops.base.errors import StepFailed

    stub_facts(rds)
    with pytest.raises(StepFailed, match=r"aep-prod: LatestRestorableTime 2026-11-26T11:55:00\+00:00 did not reach"
                                         r" the target 2026-11-26T12:10:00\+00:00 within 0s; RDS may have stopped"):
        _backend(rds).wait_until_restorable(LATEST + timedelta(minutes=15), lambda _: None, timeout=0, poll=0)
