"""The bucket's lifecycle rules that aep-ops owns, merged by rule ID into whatever else is there.

A lifecycle put replaces every rule of the bucket (aws-cli#932), so the current rules are read,
ours (``aep-ops-ENV-*``) replaced or added, the others kept as they are, the whole put back and
read again to prove it. Objects carry the tag ``aep-class`` (app or audit), so one prefix holds
both and each class expires on its own clock."""

from __future__ import annotations

from typing import Any

from aep_ops.logs.keys import env_prefix


def wanted_rules(env: str, prefix: str, values: dict[str, Any], *, versioned: bool) -> list[dict[str, Any]]:
    base = env_prefix(prefix, env)
    rules = [_class_rule(env, base, "app", int(values["retention_days"]), values, versioned),
             _class_rule(env, base, "audit", int(values["audit_retention_days"]), values, versioned),
             abort_rule(env, prefix)]
    if versioned:
        rules.append({"ID": f"aep-ops-{env}-delete-markers", "Status": "Enabled", "Filter": {"Prefix": base},
                      "Expiration": {"ExpiredObjectDeleteMarker": True}})
    return rules


def abort_rule(env: str, prefix: str) -> dict[str, Any]:
    """Incomplete multipart uploads (a killed ship's) are aborted by S3 after a day."""
    return {"ID": f"aep-ops-{env}-abort-uploads", "Status": "Enabled", "Filter": {"Prefix": env_prefix(prefix, env)},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}


def _class_rule(env: str, base: str, klass: str, days: int, values: dict[str, Any], versioned: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ID": f"aep-ops-{env}-{klass}", "Status": "Enabled",
        "Filter": {"And": {"Prefix": base, "Tags": [{"Key": "aep-class", "Value": klass}]}},
        "Expiration": {"Days": days}}
    if versioned:
        rule["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(values["noncurrent_days"])}
    return rule


def current_rules(client: Any, bucket: str) -> list[dict[str, Any]]:
    from botocore.exceptions import ClientError

    from aep_ops.aws import error_code

    try:
        return list(client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules") or [])
    except ClientError as exc:
        if error_code(exc) == "NoSuchLifecycleConfiguration":
            return []
        raise


def merged(current: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mine = {r["ID"] for r in ours}
    return [r for r in current if r.get("ID") not in mine] + ours


def missing(current: list[dict[str, Any]], ours: list[dict[str, Any]]) -> list[str]:
    """IDs of our rules the bucket lacks or holds otherwise."""
    by_id = {r.get("ID"): _normal(r) for r in current}
    return [r["ID"] for r in ours if by_id.get(r["ID"]) != _normal(r)]


def ensure(client: Any, bucket: str, ours: list[dict[str, Any]]) -> list[str]:
    """Merge and put when a rule of ours is missing or different; the IDs that were (re)written."""
    current = current_rules(client, bucket)
    changed = missing(current, ours)
    if changed:
        client.put_bucket_lifecycle_configuration(Bucket=bucket,
                                                  LifecycleConfiguration={"Rules": merged(current, ours)})
    return changed


def is_versioned(client: Any, bucket: str) -> bool:
    return client.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled"


def _normal(rule: dict[str, Any]) -> Any:
    """A rule as S3 gives it back (an empty Prefix, a lone And, ordering) compared as we wrote it."""
    rule = {k: v for k, v in rule.items() if k not in ("Prefix",) and v not in (None, "", {})}
    return repr(sorted((k, _sorted(v)) for k, v in rule.items()))


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return sorted((k, _sorted(v)) for k, v in value.items())
    if isinstance(value, list):
        return sorted((_sorted(v) for v in value), key=repr)
    return value
