"""The moto_server fixture: a real HTTP endpoint boto3 can use, and a reset that clears it."""

from __future__ import annotations

import os


def test_s3_round_trip_and_reset(moto_server):
    s3 = moto_server.client("s3")
    s3.create_bucket(Bucket="aep-test", CreateBucketConfiguration={"LocationConstraint": moto_server.region})
    s3.put_object(Bucket="aep-test", Key="backups/manifest.json", Body=b'{"ok": true}')

    body = s3.get_object(Bucket="aep-test", Key="backups/manifest.json")["Body"].read()
    assert body == b'{"ok": true}'
    assert moto_server.endpoint_url.startswith("http://127.0.0.1:")

    moto_server.reset()
    assert s3.list_buckets()["Buckets"] == []


def test_dummy_credentials_do_not_leak_into_the_environment(moto_server):
    moto_server.client("sts")
    assert os.environ.get("AWS_ACCESS_KEY_ID") != "testing"
    assert moto_server.environ["AWS_ENDPOINT_URL"] == moto_server.endpoint_url
