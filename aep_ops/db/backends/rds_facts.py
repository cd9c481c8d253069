"""Amazon RDS backend for PITR and DR drills: facts about the source and the checks that gate a restore.

RDS accepts some bad restore requests and fails later, and moto accepts all of them and
ignores ``RestoreTime``; so every rule that can be checked before calling
RestoreDBInstanceToPointInTime is checked here, in our code, with one line that says what to
do instead. The restore itself is in ``aep_ops.db.backends.rds_restore``, the cutover in
``aep_ops.db.backends.rds_cutover``. Functions take a ready boto3 client (``aep_ops.aws.client``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from aep_ops.aws.clients import aws_errors, error_code
from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.base.log import get_logger
from aep_ops.base.timefmt import EXAMPLE_TARGET as EXAMPLE, ago, aware_utc

log = get_logger(__name__)

TAG_CREATED_BY = "aep-ops:created-by"
CREATED_BY = "aep-ops"
TAG_SOURCE = "aep-ops:source"
TAG_RUN_ID = "aep-ops:run-id"
TAG_TARGET_TIME = "aep-ops:target-time"
DEFAULT_RETENTION_DAYS = 7

_NOT_FOUND = {"DBInstanceNotFound", "DBInstanceNotFoundFault"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    mapped: bool = False  # True when rds.endpoint_map redirected it (tests)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SourceFacts:
    """What a restore needs to know about the source instance, read in one go (read-only)."""

    instance_id: str
    arn: str | None
    status: str
    engine: str
    engine_version: str
    instance_class: str
    port: int | None
    backup_retention_days: int
    latest_restorable_time: datetime | None
    earliest_restorable_time: datetime | None
    earliest_from: str  # "automated-backups" (RDS's RestoreWindow), "retention" (derived) or "none"
    db_subnet_group_name: str | None
    vpc_security_group_ids: tuple[str, ...]
    db_parameter_group_name: str | None
    created_at: datetime | None = None
    publicly_accessible: bool = False
    storage_type: str | None = None
    iops: int | None = None
    storage_throughput: int | None = None
    option_group_name: str | None = None
    iam_auth: bool = False
    dbi_resource_id: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-able data for the journal and reports."""
        record = asdict(self)
        for key, value in record.items():
            if isinstance(value, datetime):
                record[key] = iso(value)
            elif isinstance(value, tuple):
                record[key] = list(value)
            elif isinstance(value, Mapping):
                record[key] = dict(value)
        return record


def source_facts(rds: Any, instance_id: str, *, now: datetime | None = None) -> SourceFacts:
    """Describe the source instance and work out its restore window."""
    now = now or utcnow()
    instance = describe_instance(rds, instance_id)
    if instance is None:
        raise UsageError(
            f"RDS instance '{instance_id}' not found in {rds.meta.region_name}; check rds.instance_id "
            "for this environment (and aws.region)"
        )
    retention = int(instance.get("BackupRetentionPeriod") or 0)
    created = _utc(instance.get("InstanceCreateTime"))
    dbi = instance.get("DbiResourceId")
    earliest, earliest_from = None, "none"
    if retention > 0:
        earliest = _earliest_from_automated_backups(rds, instance_id, dbi)
        earliest_from = "automated-backups"
        if earliest is None:
            earliest = now - timedelta(days=retention)
            earliest = max(earliest, created) if created else earliest
            earliest_from = "retention"
    groups = instance.get("DBParameterGroups") or []
    endpoint = instance.get("Endpoint") or {}
    return SourceFacts(
        instance_id=instance["DBInstanceIdentifier"],
        arn=instance.get("DBInstanceArn"),
        status=instance.get("DBInstanceStatus") or "unknown",
        engine=instance.get("Engine") or "",
        engine_version=instance.get("EngineVersion") or "",
        instance_class=instance.get("DBInstanceClass") or "",
        port=endpoint.get("Port") or instance.get("DbInstancePort") or None,
        backup_retention_days=retention,
        latest_restorable_time=_utc(instance.get("LatestRestorableTime")),
        earliest_restorable_time=earliest,
        earliest_from=earliest_from,
        db_subnet_group_name=(instance.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
        vpc_security_group_ids=tuple(g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups") or []),
        db_parameter_group_name=groups[0]["DBParameterGroupName"] if groups else None,
        created_at=created,
        publicly_accessible=bool(instance.get("PubliclyAccessible")),
        storage_type=instance.get("StorageType"),
        iops=instance.get("Iops"),
        storage_throughput=instance.get("StorageThroughput"),
        option_group_name=((instance.get("OptionGroupMemberships") or [{}])[0]).get("OptionGroupName"),
        iam_auth=bool(instance.get("IAMDatabaseAuthenticationEnabled")),
        dbi_resource_id=dbi,
        tags=tags_of(rds, instance),
    )


def check_backups(facts: SourceFacts, *, required_retention_days: int = DEFAULT_RETENTION_DAYS) -> list[str]:
    """Problems with the source's automated backups (empty list: fit for point-in-time restore)."""
    src, days = facts.instance_id, facts.backup_retention_days
    if days == 0:
        return [f"automated backups are disabled on {src} (BackupRetentionPeriod 0): no point-in-time restore "
                f"is possible; set a retention of at least {required_retention_days} days"]
    problems = []
    if days < required_retention_days:
        problems.append(f"{src} keeps automated backups for {days} day(s); the policy requires at least "
                        f"{required_retention_days} (rds.retention_days); raise BackupRetentionPeriod")
    if facts.latest_restorable_time is None:
        problems.append(f"{src} reports no LatestRestorableTime (status {facts.status}): its first automated "
                        "backup has not completed yet")
    return problems


def required_retention_days(settings: Any) -> int:
    """The policy: ``rds.retention_days`` of the environment, default 7."""
    return int(((settings.env.get("rds") or {}).get("retention_days")) or DEFAULT_RETENTION_DAYS)


def archive_lag(facts: SourceFacts, now: datetime) -> timedelta | None:
    """How far RDS's restorable point trails now (the best RPO a restore could give), None if unknown."""
    if facts.latest_restorable_time is None:
        return None
    return now - facts.latest_restorable_time


def validate_restore_request(facts: SourceFacts, *, target_time: datetime | None = None, use_latest: bool = False,
                             now: datetime) -> datetime:
    """Return the exact restore time, or raise UsageError (one line) saying why not.

    ``use_latest`` resolves to the source's LatestRestorableTime (rounded down to the second, so
    it stays restorable), so the restore is always requested with an explicit RestoreTime and
    the tags record the point restored to.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if target_time is not None and use_latest:
        raise UsageError("give a target time or ask for the latest restorable time, not both "
                         "(RDS rejects RestoreTime together with UseLatestRestorableTime)")
    if target_time is None and not use_latest:
        raise UsageError(f"give a target time (e.g. --target-time {EXAMPLE}) or ask for the latest restorable time")
    src, latest, earliest = facts.instance_id, facts.latest_restorable_time, facts.earliest_restorable_time
    if facts.backup_retention_days == 0:
        raise UsageError(f"automated backups are disabled on {src} (BackupRetentionPeriod 0): "
                         "point-in-time restore is impossible")
    if latest is None:
        raise UsageError(f"{src} has no restorable time yet (status {facts.status}); wait for its first "
                         "automated backup")
    if use_latest:
        whole = latest.replace(microsecond=0)
        return whole if earliest is None or whole >= earliest else latest
    assert target_time is not None
    target = aware_utc(target_time)
    t = iso(target)
    if target > now:
        raise UsageError(f"target {t} is in the future (now {iso(now)}); pick a time in the past")
    if target > latest:
        raise UsageError(
            f"target {t} is after the latest restorable time of {src} ({iso(latest)}: RDS's backups are "
            f"{ago(target - latest)} behind the target); pick a time at or before it, or restore to the latest"
        )
    if earliest is not None and target < earliest:
        raise UsageError(
            f"target {t} is before the earliest restorable time of {src} ({iso(earliest)}, "
            f"{facts.backup_retention_days}-day retention); nothing older is retained"
        )
    return target


def endpoint_for_verification(settings: Any, instance_id: str, endpoint: Endpoint | tuple[str, int]) -> Endpoint:
    """Where to verify a restored instance: ``rds.endpoint_map[instance_id]`` if configured (tests map
    it to a local PostgreSQL cluster), else the instance's own endpoint."""
    from fnmatch import fnmatchcase

    mapping = (settings.env.get("rds") or {}).get("endpoint_map") or {}
    for key, value in mapping.items():  # exact ids or patterns such as drill-* (ids unknown before a run)
        if fnmatchcase(instance_id.lower(), key.lower()):
            return Endpoint(*_host_port(value, where=f"environments.{settings.env_name}.rds.endpoint_map.{key}"),
                            mapped=True)
    if isinstance(endpoint, Endpoint):
        return endpoint
    host, port = endpoint
    return Endpoint(host, int(port))


def verification_params(settings: Any, endpoint: Endpoint) -> dict[str, Any]:
    """libpq parameters for checking a restored copy (for ``aep_ops.pg.connect.connect``).

    The password is resolved here, at the moment of use, and registered for masking. TLS is
    required on a real RDS endpoint unless ``database.sslmode`` says otherwise; a mapped
    (test) endpoint uses libpq's default.
    """
    rds = settings.env.get("rds") or {}
    params: dict[str, Any] = {"host": endpoint.host, "port": endpoint.port,
                              "dbname": rds.get("dbname") or "postgres", "user": rds.get("master_user") or "postgres"}
    if rds.get("master_password") is not None:
        params["password"] = settings.secret(rds["master_password"])
    sslmode = (settings.env.get("database") or {}).get("sslmode") or (None if endpoint.mapped else "require")
    if sslmode:
        params["sslmode"] = sslmode
    return params


# --- shared helpers (also used by rds_restore) ---

def describe_instance(rds: Any, instance_id: str) -> dict[str, Any] | None:
    """The DBInstance description, or None when no such instance exists."""
    from botocore.exceptions import ClientError

    with aws_errors(rds, f"describing RDS instance {instance_id}", resource=instance_id):
        try:
            found = rds.describe_db_instances(DBInstanceIdentifier=instance_id)["DBInstances"]
        except ClientError as exc:
            if error_code(exc) in _NOT_FOUND:
                return None
            raise
    return found[0] if found else None


def tags_of(rds: Any, instance: Mapping[str, Any]) -> dict[str, str]:
    """Tags of an instance: DescribeDBInstances includes TagList; older answers need ListTagsForResource."""
    if "TagList" in instance:
        tag_list = instance["TagList"] or []
    else:
        arn = instance["DBInstanceArn"]
        with aws_errors(rds, "listing tags", resource=arn):
            tag_list = rds.list_tags_for_resource(ResourceName=arn).get("TagList") or []
    return {t["Key"]: t.get("Value", "") for t in tag_list}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(when: datetime) -> str:
    """UTC ISO 8601 with a Z, whole seconds unless the time has a fraction (used in tags, compared exactly)."""
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _earliest_from_automated_backups(rds: Any, instance_id: str, dbi_resource_id: str | None) -> datetime | None:
    """RDS's own RestoreWindow.EarliestTime for this instance's active automated backups, if it says.

    Retained backups of an earlier instance with the same name carry another DbiResourceId and
    are skipped. A refused call (e.g. IAM) only loses precision: the caller derives the window.
    """
    from botocore.exceptions import ClientError

    with aws_errors(rds, f"describing automated backups of {instance_id}", resource=instance_id):
        try:
            answer = rds.describe_db_instance_automated_backups(DBInstanceIdentifier=instance_id)
        except ClientError as exc:
            log.warning("rds.automated_backups.unavailable", instance=instance_id, code=error_code(exc))
            return None
    for backup in answer.get("DBInstanceAutomatedBackups") or []:
        if dbi_resource_id and backup.get("DbiResourceId") not in (None, dbi_resource_id):
            continue
        if backup.get("Status") not in (None, "active"):
            continue
        earliest = _utc((backup.get("RestoreWindow") or {}).get("EarliestTime"))
        if earliest is not None:
            return earliest
    return None


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:  # botocore attaches tzutc; a hand-built naive value means UTC, as in AWS
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _host_port(text: str, *, where: str) -> tuple[str, int]:
    raw = (text or "").strip()
    host, sep, port = raw.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where} is {text!r}; expected host:port, e.g. 127.0.0.1:5432")
    return host, int(port)
