"""Restore an RDS instance to a point in time into a NEW instance, list and delete our restores.

Safety rules (DESIGN principle 6): a restore never writes over its source or over any
instance aep-ops did not create; cleanup deletes only instances carrying our created-by tag.
The tags written at creation (source, run id, target time) make the restore resumable: a
run killed after the API call finds its instance on the next attempt instead of creating a
second one.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator

from aep_ops.aws.clients import AwsError, AwsTimeout, aws_errors, translate
from aep_ops.base.errors import UsageError
from aep_ops.base.log import get_logger
from aep_ops.base.timefmt import aware_utc
from aep_ops.db.backends.rds_facts import (
    CREATED_BY, TAG_CREATED_BY, TAG_RUN_ID, TAG_SOURCE, TAG_TARGET_TIME, Endpoint, SourceFacts, describe_instance,
    iso, tags_of, utcnow, validate_restore_request,
)

log = get_logger(__name__)

WAIT_TIMEOUT = 3600  # seconds; a restore of a few hundred GB takes tens of minutes
WAIT_DELAY = 30
_IDENTIFIER = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9]|-(?!-)){0,62}$")
_GONE_OR_BROKEN = {"deleting", "failed", "incompatible-restore", "incompatible-parameters", "incompatible-network",
                   "restore-error", "storage-full"}


@dataclass(frozen=True)
class RestoredInstance:
    """An instance aep-ops restored. ``changed``: this call issued the restore (False: found/resumed)."""

    instance_id: str
    source_id: str | None
    target_time: str | None
    run_id: str | None
    status: str
    endpoint: Endpoint | None
    changed: bool = False

    def to_record(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "source_id": self.source_id, "target_time": self.target_time,
                "run_id": self.run_id, "status": self.status, "changed": self.changed,
                "endpoint": str(self.endpoint) if self.endpoint else None}


def restore_tags(source_id: str, run_id: str, target_time: datetime) -> list[dict[str, str]]:
    return [
        {"Key": TAG_CREATED_BY, "Value": CREATED_BY},
        {"Key": TAG_SOURCE, "Value": source_id},
        {"Key": TAG_RUN_ID, "Value": run_id},
        {"Key": TAG_TARGET_TIME, "Value": iso(target_time)},
    ]


def restore_request(facts: SourceFacts, *, new_id: str, target_time: datetime, run_id: str,
                    instance_class: str | None = None) -> dict[str, Any]:
    """The RestoreDBInstanceToPointInTime parameters (pure: printed by --dry-run, asserted in tests).

    Network, parameter and option groups are copied from the source because RDS otherwise puts
    the copy in the default VPC security group and default groups, where the app cannot reach it
    or it behaves differently. Exposure is copied explicitly (RDS's default for
    PubliclyAccessible depends on the subnet group: a copy of production data must never be more
    reachable than production), and so is the storage (type, IOPS, throughput: the restore and
    the first hours after it run on that storage, and the RTO with them). The copy is single-AZ:
    faster to create; after a cutover, make it Multi-AZ online (`modify-db-instance --multi-az`).
    Never UseLatestRestorableTime: the time is always explicit.
    """
    request: dict[str, Any] = {
        "SourceDBInstanceIdentifier": facts.instance_id,
        "TargetDBInstanceIdentifier": new_id,
        "RestoreTime": target_time,
        "DBInstanceClass": instance_class or facts.instance_class,
        "PubliclyAccessible": facts.publicly_accessible,
        "MultiAZ": False,
        "EnableIAMDatabaseAuthentication": facts.iam_auth,
        "CopyTagsToSnapshot": True,
        "DeletionProtection": False,
        "Tags": restore_tags(facts.instance_id, run_id, target_time),
    }
    if facts.storage_type:
        request["StorageType"] = facts.storage_type
    if facts.iops and facts.storage_type in ("io1", "io2", "gp3"):
        request["Iops"] = facts.iops
    if facts.storage_throughput and facts.storage_type == "gp3":
        request["StorageThroughput"] = facts.storage_throughput
    if facts.option_group_name and not facts.option_group_name.startswith("default:"):  # RDS picks the default
        request["OptionGroupName"] = facts.option_group_name
    if facts.db_subnet_group_name:
        request["DBSubnetGroupName"] = facts.db_subnet_group_name
    if facts.vpc_security_group_ids:
        request["VpcSecurityGroupIds"] = list(facts.vpc_security_group_ids)
    if facts.db_parameter_group_name:
        request["DBParameterGroupName"] = facts.db_parameter_group_name
    return request


def restore_to_new_instance(rds: Any, facts: SourceFacts, *, new_id: str, target_time: datetime, run_id: str,
                            instance_class: str | None = None, wait: bool = True,
                            wait_timeout: float = WAIT_TIMEOUT, wait_delay: float = WAIT_DELAY,
                            now: datetime | None = None, progress: Any = None) -> RestoredInstance:
    """Restore ``facts.instance_id`` as of ``target_time`` into ``new_id``, wait until available.

    Idempotent: if ``new_id`` already holds our restore of the same source to the same time,
    it is returned (and waited for) instead of restoring again.
    """
    _check_identifier(new_id)
    target_time = aware_utc(target_time)
    if new_id.lower() == facts.instance_id.lower():
        raise UsageError(f"refusing to restore {facts.instance_id} onto itself; choose a new instance id")
    existing = describe_instance(rds, new_id)
    if existing is not None:
        found = _resume(rds, existing, facts, target_time)
        log.info("rds.restore.resume", instance=new_id, source=facts.instance_id, status=found.status)
        changed = False
    else:
        target = validate_restore_request(facts, target_time=target_time, now=now or utcnow())  # right before apply
        request = restore_request(facts, new_id=new_id, target_time=target, run_id=run_id,
                                  instance_class=instance_class)
        log.info("rds.restore.start", instance=new_id, source=facts.instance_id, target_time=iso(target),
                 instance_class=request["DBInstanceClass"])
        with aws_errors(rds, f"restoring {facts.instance_id} to {iso(target)}", resource=new_id):
            rds.restore_db_instance_to_point_in_time(**request)
        changed = True
    if wait:
        wait_available(rds, new_id, timeout=wait_timeout, delay=wait_delay, progress=progress)
    final = describe_instance(rds, new_id)
    if final is None:
        raise AwsError(f"RDS instance {new_id} vanished right after its restore; check `aws rds describe-events "
                       f"--source-identifier {new_id} --source-type db-instance`")
    result = _restored(rds, final, changed=changed)
    log.info("rds.restore.done", instance=new_id, status=result.status, changed=changed,
             endpoint=str(result.endpoint) if result.endpoint else None)
    return result


def wait_available(rds: Any, instance_id: str, *, timeout: float = WAIT_TIMEOUT, delay: float = WAIT_DELAY,
                   progress: Any = None) -> None:
    """boto3's ``db_instance_available`` waiter, bounded by ``timeout`` seconds, with progress:
    RDS tells no bytes, so what shows is the instance's status, the time elapsed and the time left
    before the timeout (``watch_instance``)."""
    from botocore.exceptions import WaiterError

    delay = max(1, int(delay))
    attempts = max(1, math.ceil(timeout / delay))
    waiter = rds.get_waiter("db_instance_available")
    try:
        with watch_instance(rds, instance_id, progress, limit=timeout, every=max(delay, 60)):
            waiter.wait(DBInstanceIdentifier=instance_id, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
    except WaiterError as exc:
        last = exc.last_response or {}
        status = ((last.get("DBInstances") or [{}])[0]).get("DBInstanceStatus")
        doing = f"waiting for RDS instance {instance_id} to become available"
        if "Error" in last or status is None:
            raise translate(exc, doing=doing, resource=instance_id, client=rds) from exc
        if "Max attempts exceeded" in str(exc):
            raise AwsTimeout(f"{doing}: still '{status}' after {timeout:g}s; the restore continues in AWS: "
                             "re-run to resume waiting") from exc
        raise AwsError(f"{doing}: it entered status '{status}'; see `aws rds describe-events --source-identifier "
                       f"{instance_id} --source-type db-instance`, delete it and retry") from exc


@contextmanager
def watch_instance(rds: Any, instance_id: str, progress: Any, *, limit: float, every: float = 60) -> Iterator[None]:
    """A progress line for an instance being created: the status the waiter's own
    DescribeDBInstances calls report (read from the client's after-call event: no call of its
    own), the time elapsed and the time left before ``limit``; an event every ``every`` seconds."""
    from aep_ops.pg.progress import Watch, stream_of

    seen: dict[str, Any] = {"status": None}
    event = "after-call.rds.DescribeDBInstances"

    def remember(parsed: Any = None, **_: Any) -> None:
        for instance in (parsed or {}).get("DBInstances") or []:
            if instance.get("DBInstanceIdentifier", "").lower() == instance_id.lower():
                seen["status"] = instance.get("DBInstanceStatus")

    rds.meta.events.register(event, remember)
    try:
        with Watch(f"DB instance {instance_id}", lambda: None, None, verb_done=f"DB instance {instance_id} available",
                   out=stream_of(progress), sample=1.0, event_every=every, status=lambda: seen["status"],
                   limit=limit, phase="restore", instance=instance_id):
            yield
    finally:
        rds.meta.events.unregister(event, remember)


def restored_instances(rds: Any, *, source_id: str | None = None) -> list[RestoredInstance]:
    """Every instance carrying our created-by tag (optionally only restores of ``source_id``)."""
    found = []
    with aws_errors(rds, "listing RDS instances"):
        for page in rds.get_paginator("describe_db_instances").paginate():
            for instance in page.get("DBInstances") or []:
                tags = tags_of(rds, instance)
                if tags.get(TAG_CREATED_BY) != CREATED_BY:
                    continue
                if source_id and (tags.get(TAG_SOURCE) or "").lower() != source_id.lower():
                    continue
                found.append(_restored(rds, instance, tags=tags))
    return found


def delete_restored(rds: Any, instance_id: str, *, wait: bool = False, wait_timeout: float = 1800,
                    wait_delay: float = WAIT_DELAY) -> bool:
    """Delete an instance aep-ops restored (no final snapshot). True if a delete was issued.

    Refuses any instance without our created-by tag. Already gone or already deleting: False.
    """
    instance = describe_instance(rds, instance_id)
    if instance is None:
        log.info("rds.delete.unchanged", instance=instance_id, reason="not found")
        return False
    tags = tags_of(rds, instance)
    if tags.get(TAG_CREATED_BY) != CREATED_BY:
        raise UsageError(
            f"refusing to delete RDS instance {instance_id}: it has no tag {TAG_CREATED_BY}={CREATED_BY}, so aep-ops "
            "did not create it; delete it by hand if that is really meant"
        )
    changed = False
    if instance.get("DBInstanceStatus") != "deleting":
        log.info("rds.delete.start", instance=instance_id, source=tags.get(TAG_SOURCE), run_id=tags.get(TAG_RUN_ID))
        with aws_errors(rds, f"deleting restored RDS instance {instance_id}", resource=instance_id):
            rds.delete_db_instance(DBInstanceIdentifier=instance_id, SkipFinalSnapshot=True,
                                   DeleteAutomatedBackups=True)
        changed = True
    if wait:
        delay = max(1, int(wait_delay))
        with aws_errors(rds, f"waiting for RDS instance {instance_id} to be deleted", resource=instance_id):
            rds.get_waiter("db_instance_deleted").wait(
                DBInstanceIdentifier=instance_id,
                WaiterConfig={"Delay": delay, "MaxAttempts": max(1, math.ceil(wait_timeout / delay))})
    return changed


def _resume(rds: Any, existing: dict[str, Any], facts: SourceFacts, target_time: datetime) -> RestoredInstance:
    """Accept an existing ``new_id`` only if it is our restore of the same source to the same time."""
    new_id = existing["DBInstanceIdentifier"]
    tags = tags_of(rds, existing)
    if tags.get(TAG_CREATED_BY) != CREATED_BY:
        raise UsageError(f"RDS instance {new_id} already exists and aep-ops did not create it (no tag "
                         f"{TAG_CREATED_BY}); choose another instance id")
    wanted = (facts.instance_id.lower(), iso(target_time))
    if ((tags.get(TAG_SOURCE) or "").lower(), tags.get(TAG_TARGET_TIME)) != wanted:
        raise UsageError(
            f"RDS instance {new_id} already holds another restore ({tags.get(TAG_SOURCE)} at "
            f"{tags.get(TAG_TARGET_TIME)}, run {tags.get(TAG_RUN_ID)}); delete it or choose another instance id"
        )
    status = existing.get("DBInstanceStatus") or "unknown"
    if status in _GONE_OR_BROKEN:
        raise UsageError(f"RDS instance {new_id} (our earlier restore) is '{status}'; delete it (or wait until it "
                         "is gone) and retry, or choose another instance id")
    return _restored(rds, existing, tags=tags)


def _restored(rds: Any, instance: dict[str, Any], *, tags: dict[str, str] | None = None,
              changed: bool = False) -> RestoredInstance:
    tags = tags if tags is not None else tags_of(rds, instance)
    ep = instance.get("Endpoint") or {}
    return RestoredInstance(
        instance_id=instance["DBInstanceIdentifier"],
        source_id=tags.get(TAG_SOURCE),
        target_time=tags.get(TAG_TARGET_TIME),
        run_id=tags.get(TAG_RUN_ID),
        status=instance.get("DBInstanceStatus") or "unknown",
        endpoint=Endpoint(ep["Address"], int(ep["Port"])) if ep.get("Address") and ep.get("Port") else None,
        changed=changed,
    )


def _check_identifier(new_id: str) -> None:
    if not _IDENTIFIER.match(new_id or "") or new_id.endswith("-"):
        raise UsageError(f"{new_id!r} is not a valid RDS instance id: 1-63 letters, digits or hyphens, starting "
                         "with a letter, no '--', not ending with '-'")
