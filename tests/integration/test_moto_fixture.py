"""The moto fixtures: one real HTTP endpoint for the session, one empty AWS account per test
(also for subprocesses, which get it through ``environ``), and a reset that forgets the default
account only, never another test's resources."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from aep_ops.testing.moto import DEFAULT_ACCOUNT_ID

LIST_BUCKETS = ("import boto3; print(' '.join(b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']))")


def _bucket(moto, name: str, body: bytes) -> None:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": moto.region})
    s3.put_object(Bucket=name, Key="backups/manifest.json", Body=body)


def _buckets(moto) -> list[str]:
    return [b["Name"] for b in moto.client("s3").list_buckets()["Buckets"]]


def _body(moto, bucket: str) -> bytes:
    return moto.client("s3").get_object(Bucket=bucket, Key="backups/manifest.json")["Body"].read()


def test_s3_round_trip_in_the_tests_own_account(moto_account):
    _bucket(moto_account, "aep-test", b'{"ok": true}')
    assert _body(moto_account, "aep-test") == b'{"ok": true}'
    assert moto_account.endpoint_url.startswith("http://127.0.0.1:")
    assert moto_account.account_id != DEFAULT_ACCOUNT_ID
    assert moto_account.client("sts").get_caller_identity()["Account"] == moto_account.account_id


def test_each_account_sees_only_its_own_resources(moto_server, moto_account):
    other = moto_server.new_account()
    _bucket(moto_account, "aep-mine", b"mine")
    moto_account.client("rds").create_db_instance(
        DBInstanceIdentifier="aep-staging", DBInstanceClass="db.t4g.micro", Engine="postgres",
        MasterUsername="r", MasterUserPassword="x" * 12, AllocatedStorage=20)

    assert _buckets(moto_account) == ["aep-mine"]
    assert _buckets(other) == [] and "aep-mine" not in _buckets(moto_server)
    assert other.client("rds").describe_db_instances()["DBInstances"] == []
    other.client("rds").create_db_instance(  # the same name in another account: no clash
        DBInstanceIdentifier="aep-staging", DBInstanceClass="db.t4g.micro", Engine="postgres",
        MasterUsername="r", MasterUserPassword="x" * 12, AllocatedStorage=20)


def test_a_subprocess_given_the_accounts_environ_works_in_that_account(moto_account):
    _bucket(moto_account, "aep-for-the-cli", b"x")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    listed = subprocess.run([sys.executable, "-c", LIST_BUCKETS], env={**env, **moto_account.environ},
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["aep-for-the-cli"]


def test_reset_forgets_the_default_account_and_nothing_else(moto_server, moto_account):
    _bucket(moto_server, "aep-default-left-over", b"default")
    _bucket(moto_account, "aep-kept", b"kept")

    moto_server.reset()

    assert "aep-default-left-over" not in _buckets(moto_server)
    assert _buckets(moto_account) == ["aep-kept"] and _body(moto_account, "aep-kept") == b"kept"
    assert moto_account.client("sts").get_caller_identity()["Account"] == moto_account.account_id, \
        "the account's credentials still map to it"
    _bucket(moto_server, "aep-default-left-over", b"again")  # its name is free again
    moto_server.reset()


def test_a_tests_own_account_cannot_be_reset(moto_account):
    with pytest.raises(RuntimeError, match="take moto_server.new_account"):
        moto_account.reset()


def test_dummy_credentials_do_not_leak_into_the_environment(moto_server, moto_account):
    moto_server.client("sts")
    assert os.environ.get("AWS_ACCESS_KEY_ID") != "testing"
    assert "AWS_SESSION_TOKEN" not in os.environ or os.environ["AWS_SESSION_TOKEN"] != \
        moto_account.credentials["aws_session_token"]
    assert moto_account.environ["AWS_ENDPOINT_URL"] == moto_server.endpoint_url
