"""logs.retention as a user runs it against a bucket on the moto server and a real sshd host: our
rules merged in by ID with the bucket's own rules kept (a lifecycle put replaces them all), read
back, idempotent; versioned buckets; object lock for audit logs; shipped files pruned, unshipped
ones never."""

from __future__ import annotations

import os
import time

import pytest

from tests.conftest import write_config
from tests.support.log_fleet import configured_log_fleet

FOREIGN = {"ID": "keep-me", "Status": "Enabled", "Filter": {"Prefix": "other/"}, "Expiration": {"Days": 3}}


@pytest.fixture
def fleet(ssh_host_factory, moto_account, tmp_path, monkeypatch):
    with configured_log_fleet(1, ssh_host_factory, moto_account, tmp_path, monkeypatch) as fleet:
        yield fleet


def rules(fleet) -> dict:
    found = fleet.moto.client("s3").get_bucket_lifecycle_configuration(Bucket=fleet.bucket)["Rules"]
    return {r["ID"]: r for r in found}


def test_rules_merged_by_id_read_back_and_idempotent(fleet, cli, tmp_path, monkeypatch):
    fleet.moto.client("s3").put_bucket_lifecycle_configuration(
        Bucket=fleet.bucket, LifecycleConfiguration={"Rules": [FOREIGN]})
    first = cli("logs.retention", "--env", "staging", check_rc=0)
    assert "changed - write aep-ops-staging-app, aep-ops-staging-audit, aep-ops-staging-abort-uploads" in first.stdout
    found = rules(fleet)
    assert found["keep-me"]["Expiration"] == {"Days": 3}  # the bucket's own rule survives our put
    assert found["aep-ops-staging-app"]["Expiration"] == {"Days": 30}  # development: 30 days
    assert found["aep-ops-staging-app"]["Filter"]["And"]["Tags"] == [{"Key": "aep-class", "Value": "app"}]
    assert found["aep-ops-staging-audit"]["Expiration"] == {"Days": 365}
    assert found["aep-ops-staging-abort-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    assert "rule aep-ops-staging-app: expire after 30 days" in first.stdout
    again = cli("logs.retention", "--env", "staging", check_rc=0)
    assert "unchanged - s3://" in again.stdout

    write_config(tmp_path / "aep-ops.yaml", fleet.config("prod", production=True), monkeypatch)
    prod = cli("logs.retention", "--env", "prod", "--yes", check_rc=0)
    assert "app 90 days" in prod.stdout
    found = rules(fleet)
    assert found["aep-ops-prod-app"]["Expiration"] == {"Days": 90}  # production: 90 days
    assert found["aep-ops-staging-app"]["Expiration"] == {"Days": 30} and "keep-me" in found


def test_a_versioned_bucket_also_expires_noncurrent_versions_and_delete_markers(fleet, cli):
    fleet.moto.client("s3").put_bucket_versioning(Bucket=fleet.bucket, VersioningConfiguration={"Status": "Enabled"})
    cli("logs.retention", "--env", "staging", check_rc=0)
    found = rules(fleet)
    assert found["aep-ops-staging-app"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}
    assert found["aep-ops-staging-delete-markers"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}


def test_audit_object_lock_needs_a_bucket_that_can_lock(fleet, cli, tmp_path, monkeypatch):
    locked = "      audit_object_lock: {mode: GOVERNANCE, days: 400}\n"
    write_config(tmp_path / "aep-ops.yaml", fleet.config(logs_extra=locked), monkeypatch)
    done = cli("logs.retention", "--env", "staging")
    assert done.returncode == 1 and "has no object lock, so audit logs cannot be locked" in done.stdout
    s3 = fleet.moto.client("s3")
    lockable = fleet.bucket + "-lock"
    s3.create_bucket(Bucket=lockable, CreateBucketConfiguration={"LocationConstraint": fleet.moto.region},
                     ObjectLockEnabledForBucket=True)
    done = cli("logs.retention", "--env", "staging", "--bucket", lockable, check_rc=0)
    assert "audit logs are shipped locked in GOVERNANCE mode for 400 days" in done.stdout


def test_only_shipped_files_past_their_days_are_deleted_from_the_hosts(fleet, cli):
    directory = fleet.hosts[0].directory
    (directory / "shipped").mkdir()
    old, new = directory / "shipped" / "api.log-20261101-1793000000.gz", directory / "shipped" / "api.log-x.gz"
    unshipped = directory / "api.log-20261101-1793000001.gz"
    for path in (old, new, unshipped):
        path.write_bytes(b"x")
    ten_days_ago = time.time() - 10 * 86400
    for path in (old, unshipped):
        os.utime(path, (ten_days_ago, ten_days_ago))
    done = cli("logs.retention", "--env", "staging", check_rc=0)
    assert "deleted from the hosts: 1 shipped file(s)" in done.stdout
    assert not old.exists() and new.exists() and unshipped.exists()
    again = cli("logs.retention", "--env", "staging", check_rc=0)
    assert "unchanged - no shipped file older than 7 days" in again.stdout


def test_audit_logs_are_shipped_locked_and_tagged_for_their_own_rule(fleet, cli, tmp_path, monkeypatch):
    s3 = fleet.moto.client("s3")
    lockable = fleet.bucket + "-audit"
    s3.create_bucket(Bucket=lockable, CreateBucketConfiguration={"LocationConstraint": fleet.moto.region},
                     ObjectLockEnabledForBucket=True)
    sources = f"        - {{name: audit, kind: audit, role: api, paths: ['{fleet.base}/{{host}}/audit.jsonl']}}\n"
    extra = "      audit_object_lock: {mode: GOVERNANCE, days: 400}\n"
    write_config(tmp_path / "aep-ops.yaml", fleet.config(logs_extra=extra, sources=sources), monkeypatch)
    rotated = fleet.hosts[0].directory / "audit.jsonl-20261207-1796650000.gz"
    rotated.write_bytes(__import__("gzip").compress(b'{"time":"2026-12-07T10:00:00Z","action":"dr.drill"}\n'))
    cli("logs.ship", "--env", "staging", "--bucket", lockable, check_rc=0)
    key = "staging/api/log1/2026/12/07/audit.jsonl-20261207-1796650000.gz"
    head = s3.head_object(Bucket=lockable, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"].year >= 2027
    assert s3.get_object_tagging(Bucket=lockable, Key=key)["TagSet"] == [{"Key": "aep-class", "Value": "audit"}]
