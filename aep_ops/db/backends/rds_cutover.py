"""Cutover helpers: point the application at a restored instance, back again, and read back where it points.

Two levers, both outside the database: a Route 53 CNAME and the Secrets Manager secret that
holds the application's connection fields. Each change reports what it replaced so it can be
undone, and neither touches the old DB instance (it stays as it was for forensics/fallback).
Secret values are never returned or logged: sensitive fields are reported as ``****``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from aep_ops.base import redact
from aep_ops.aws.clients import aws_errors
from aep_ops.base.errors import UsageError
from aep_ops.base.log import get_logger

log = get_logger(__name__)

CUTOVER_TTL = 60
_SENSITIVE = ("password", "passwd", "secret", "token", "key", "passphrase", "credential", "dsn", "uri", "url")


@dataclass(frozen=True)
class DnsChange:
    zone_id: str
    record_name: str
    previous: str | None  # previous CNAME target (None: there was no record)
    previous_ttl: int | None
    current: str
    ttl: int
    changed: bool
    change_id: str | None = None


@dataclass(frozen=True)
class SecretChange:
    secret_id: str
    previous_version_id: str | None
    new_version_id: str | None
    previous: Mapping[str, Any] = field(default_factory=dict)  # the replaced fields, sensitive ones masked
    current: Mapping[str, Any] = field(default_factory=dict)
    changed: bool = False


def point_route53(route53: Any, zone_id: str, record_name: str, address: str, *, ttl: int = CUTOVER_TTL,
                  wait: bool = True, wait_timeout: float = 300, wait_delay: float = 5) -> DnsChange:
    """UPSERT ``record_name`` as a CNAME to ``address`` (TTL 60); unchanged if it already points there."""
    name = _fqdn(record_name)
    existing = _record(route53, zone_id, name)
    previous = previous_ttl = None
    if existing is not None:
        previous, previous_ttl = existing["ResourceRecords"][0]["Value"], existing.get("TTL")
        if _fqdn(previous) == _fqdn(address) and previous_ttl == ttl:
            log.info("route53.cutover.unchanged", record=name, value=address)
            return DnsChange(zone_id, name, previous, previous_ttl, address, ttl, changed=False)
    change_id = _change(route53, zone_id, "UPSERT", name, address, ttl, wait=wait, timeout=wait_timeout,
                        delay=wait_delay)
    log.info("route53.cutover.done", record=name, previous=previous, value=address, change_id=change_id)
    return DnsChange(zone_id, name, previous, previous_ttl, address, ttl, changed=True, change_id=change_id)


def undo_route53(route53: Any, change: DnsChange, *, wait: bool = True) -> DnsChange:
    """Put back what ``point_route53`` replaced (or delete the record it created)."""
    if not change.changed:
        return change
    existing = _record(route53, change.zone_id, change.record_name)
    if existing is None or _fqdn(existing["ResourceRecords"][0]["Value"]) != _fqdn(change.current):
        raise UsageError(f"{change.record_name} no longer points at {change.current}; someone changed it since "
                         "the cutover: not undoing it, check the record by hand")
    if change.previous is None:
        _change(route53, change.zone_id, "DELETE", change.record_name, existing["ResourceRecords"][0]["Value"],
                existing["TTL"], wait=wait)
        return DnsChange(change.zone_id, change.record_name, change.current, change.ttl, "", 0, changed=True)
    return point_route53(route53, change.zone_id, change.record_name, change.previous,
                         ttl=change.previous_ttl or CUTOVER_TTL, wait=wait)


def point_secret(secretsmanager: Any, secret_id: str, dsn_fields: Mapping[str, Any]) -> SecretChange:
    """Merge ``dsn_fields`` (host, port, ...) into the JSON secret ``secret_id`` as a new version.

    Other fields (the password) are kept. The previous version stays in Secrets Manager as
    AWSPREVIOUS: ``undo_secret`` puts it back.
    """
    current, data = _read_json_secret(secretsmanager, secret_id)
    merged = {**data, **dsn_fields}
    before = _masked({k: data.get(k) for k in dsn_fields})
    after = _masked(dict(dsn_fields))
    if merged == data:
        log.info("secret.cutover.unchanged", secret=secret_id)
        return SecretChange(secret_id, current["VersionId"], current["VersionId"], before, after, changed=False)
    new_version = _put(secretsmanager, secret_id, merged)
    log.info("secret.cutover.done", secret=secret_id, previous=before, current=after, version=new_version)
    return SecretChange(secret_id, current["VersionId"], new_version, before, after, changed=True)


def undo_secret(secretsmanager: Any, change: SecretChange) -> SecretChange:
    """Make the version ``point_secret`` replaced current again (as a new version with its content)."""
    if not change.changed:
        return change
    current, _ = _read_json_secret(secretsmanager, change.secret_id)
    if current["VersionId"] != change.new_version_id:
        raise UsageError(f"secret {change.secret_id} changed again after the cutover (current version "
                         f"{current['VersionId']}); not undoing it, check it by hand")
    _, previous = _read_json_secret(secretsmanager, change.secret_id, version_id=change.previous_version_id)
    new_version = _put(secretsmanager, change.secret_id, previous)
    return SecretChange(change.secret_id, change.new_version_id, new_version, change.current, change.previous,
                        changed=True)


def cname_target(route53: Any, zone_id: str, record_name: str) -> str | None:
    """Where the CNAME points now (None: no record): what the application resolves."""
    existing = _record(route53, zone_id, _fqdn(record_name))
    return existing["ResourceRecords"][0]["Value"] if existing else None


def secret_endpoint(secretsmanager: Any, secret_id: str) -> tuple[str | None, int | None]:
    """(host, port) in the application's secret now; the password is never returned."""
    _, data = _read_json_secret(secretsmanager, secret_id)
    port = data.get("port")
    return data.get("host"), int(port) if isinstance(port, (int, str)) and str(port).isdigit() else None


def same_host(a: str | None, b: str | None) -> bool:
    return bool(a and b) and _fqdn(a) == _fqdn(b)


def _record(route53: Any, zone_id: str, name: str) -> dict[str, Any] | None:
    """The record set at ``name``; refuses what a CNAME cutover cannot safely replace."""
    with aws_errors(route53, f"reading Route 53 record {name}", resource=f"hosted zone {zone_id}"):
        sets = route53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=name,
                                                 MaxItems="10")["ResourceRecordSets"]
    mine = [s for s in sets if _fqdn(s["Name"]) == name]
    if not mine:
        return None
    kinds = sorted({s["Type"] for s in mine})
    if kinds != ["CNAME"] or len(mine) > 1 or "AliasTarget" in mine[0] or "SetIdentifier" in mine[0]:
        raise UsageError(f"{name} in zone {zone_id} is not a plain CNAME ({', '.join(kinds)}); aep-ops only "
                         "switches plain CNAME records: change it by hand")
    return mine[0]


def _change(route53: Any, zone_id: str, action: str, name: str, value: str, ttl: int, *, wait: bool,
            timeout: float = 300, delay: float = 5) -> str:
    batch = {"Comment": "aep-ops cutover", "Changes": [{"Action": action, "ResourceRecordSet": {
        "Name": name, "Type": "CNAME", "TTL": ttl, "ResourceRecords": [{"Value": value}]}}]}
    with aws_errors(route53, f"{action} of Route 53 record {name}", resource=f"hosted zone {zone_id}"):
        change_id = route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch=batch)["ChangeInfo"]["Id"]
        if wait:
            delay = max(1, int(delay))
            route53.get_waiter("resource_record_sets_changed").wait(
                Id=change_id, WaiterConfig={"Delay": delay, "MaxAttempts": max(1, math.ceil(timeout / delay))})
    return change_id


def _read_json_secret(sm: Any, secret_id: str, *, version_id: str | None = None) -> tuple[dict, dict]:
    kwargs = {"SecretId": secret_id, **({"VersionId": version_id} if version_id else {})}
    with aws_errors(sm, f"reading secret {secret_id}", resource=secret_id):
        answer = sm.get_secret_value(**kwargs)
    raw = answer.get("SecretString")
    try:
        data = json.loads(raw) if raw is not None else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise UsageError(f"secret {secret_id} is not a JSON object of connection fields; cannot switch it safely")
    for key, value in data.items():
        if _sensitive(key) and value is not None:
            redact.register(str(value))
    return answer, data


def _put(sm: Any, secret_id: str, data: Mapping[str, Any]) -> str:
    with aws_errors(sm, f"writing a new version of secret {secret_id}", resource=secret_id):
        return sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(data, sort_keys=True))["VersionId"]


def _masked(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ("****" if _sensitive(k) and v is not None else v) for k, v in fields.items()}


def _sensitive(key: str) -> bool:
    return any(s in key.lower() for s in _SENSITIVE)


def _fqdn(name: str) -> str:
    return name.strip().lower().rstrip(".") + "."
