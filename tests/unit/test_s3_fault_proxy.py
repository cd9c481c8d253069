"""The fault proxy in front of moto (aep_ops/testing/s3proxy.py): real moto server, real boto3 clients,
real sockets. Each fault is shown to reach the client as a real S3 fault would, and the plain path to
relay what botocore sends over http (Expect: 100-continue, Content-Length bodies, checksum headers)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid

import botocore.exceptions
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from aep_ops.testing.moto import start_moto_server, stop_moto_server
from aep_ops.testing.s3proxy import S3FaultProxy, check_or_fix, match

MiB = 2**20
BUCKET = "proxy-test-bucket"
RETRYING = Config(retries={"max_attempts": 3, "mode": "standard"})
# MotoServer.client's max_attempts=1 is one *retry* (botocore's legacy meaning): one attempt in all is this.
NO_RETRY = Config(retries={"total_max_attempts": 1})


@pytest.fixture(scope="module")
def moto():
    server = start_moto_server()
    try:
        server.client("s3").create_bucket(Bucket=BUCKET,
                                          CreateBucketConfiguration={"LocationConstraint": server.region})
        yield server
    finally:
        stop_moto_server(server)


@pytest.fixture
def proxy(moto):
    with S3FaultProxy(moto.endpoint_url) as running:
        yield running


@pytest.fixture
def key():
    return f"logs/{uuid.uuid4().hex}/api.log"


@pytest.fixture(scope="module")
def direct(moto):
    """A client of moto itself, past the proxy."""
    return moto.client("s3")


def stored(direct, key):
    """The object as moto holds it, or None."""
    try:
        return direct.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchKey"
        return None


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def test_put_get_head_delete_and_a_multipart_upload_pass_through(direct, moto, proxy, key):
    client = moto.client("s3", endpoint_url=proxy.url)
    client.put_object(Bucket=BUCKET, Key=key, Body=b"line 1\n")
    assert client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"line 1\n"
    assert client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 7
    big = os.urandom(5 * MiB)
    client.put_object(Bucket=BUCKET, Key=key + ".5m", Body=big)
    assert stored(direct, key + ".5m") == big
    client.delete_object(Bucket=BUCKET, Key=key)
    assert stored(direct, key) is None

    data = os.urandom(6 * MiB)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    client.upload_fileobj(io.BytesIO(data), BUCKET, key + ".6m", Config=config,
                          ExtraArgs={"ChecksumAlgorithm": "SHA256"})
    assert stored(direct, key + ".6m") == data
    head = client.head_object(Bucket=BUCKET, Key=key + ".6m", ChecksumMode="ENABLED")
    assert head["ContentLength"] == 6 * MiB and head["ChecksumSHA256"]

    parts = [h for (m, _, q), h in zip(proxy.requests, proxy.request_headers) if m == "PUT" and "partNumber" in q]
    assert sorted(int(q["partNumber"]) for m, _, q in proxy.requests if m == "PUT" and "partNumber" in q) == [1, 2]
    assert ("POST", f"/{BUCKET}/{key}.6m", {"uploads": ""}) in proxy.requests
    # What botocore sends over plain http: Content-Length (never chunked), Expect: 100-continue,
    # the body's checksum in a header (not an aws-chunked trailer) and the payload's sha256 signed.
    for headers in parts:
        assert "transfer-encoding" not in headers and "content-encoding" not in headers
        assert headers["expect"] == "100-continue"
        assert headers["x-amz-checksum-sha256"] and len(headers["x-amz-content-sha256"]) == 64
    assert {int(h["content-length"]) for h in parts} == {5 * MiB, 1 * MiB}
    assert proxy.errors == []


def test_expect_100_continue_is_answered_before_the_body_is_sent(direct, moto, proxy, key):
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"PUT /{BUCKET}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                     "Expect: 100-continue\r\n\r\n".encode())
        interim = sock.recv(1024)  # blocks (10 s at most) until the proxy answers, the body unsent
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"hello")
        reply = sock.makefile("rb").readline()
    assert reply.startswith(b"HTTP/1.1 200")
    assert stored(direct, key) == b"hello"


def test_a_chunked_request_body_is_relayed(direct, moto, proxy, key):
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("PUT", f"/{BUCKET}/{key}", body=iter([b"first ", b"second"]), encode_chunked=True)
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 200
    assert proxy.request_headers[-1]["transfer-encoding"] == "chunked"
    assert stored(direct, key) == b"first second"


def test_a_500_fires_once_and_the_retry_succeeds(direct, moto, proxy, key):
    rule = proxy.fail_with_500(match("PUT", key_contains=key))
    moto.client("s3", endpoint_url=proxy.url, config=RETRYING).put_object(Bucket=BUCKET, Key=key, Body=b"x")
    assert rule.fired == 1 and rule.remaining == 0
    assert [m for m, path, _ in proxy.requests if path.endswith(key)] == ["PUT", "PUT"]
    assert stored(direct, key) == b"x"

    proxy.fail_with_500(match("PUT", key_contains=key))
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        moto.client("s3", endpoint_url=proxy.url, config=NO_RETRY).put_object(Bucket=BUCKET, Key=key, Body=b"y")
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert stored(direct, key) == b"x"  # not forwarded


def test_a_connection_dropped_mid_body_fails_a_single_attempt_and_a_retry_gets_through(direct, moto, proxy, key):
    data = os.urandom(2 * MiB)
    rule = proxy.drop_connection(match("PUT", key_contains=key), after_bytes=MiB)
    with pytest.raises(botocore.exceptions.ConnectionClosedError):  # the reset, not an HTTP error
        moto.client("s3", endpoint_url=proxy.url, config=NO_RETRY).put_object(Bucket=BUCKET, Key=key, Body=data)
    assert rule.fired == 1
    assert stored(direct, key) is None

    rule = proxy.drop_connection(match("PUT", key_contains=key))
    moto.client("s3", endpoint_url=proxy.url, config=RETRYING).put_object(Bucket=BUCKET, Key=key, Body=data)
    assert rule.fired == 1
    assert stored(direct, key) == data


def test_a_dropped_upload_part_is_retried_by_s3transfer(direct, moto, proxy, key):
    data = os.urandom(6 * MiB)
    rule = proxy.drop_connection(match("PUT", key_contains=key, query_has="partNumber"))
    client = moto.client("s3", endpoint_url=proxy.url, config=RETRYING)
    client.upload_fileobj(io.BytesIO(data), BUCKET, key, ExtraArgs={"ChecksumAlgorithm": "SHA256"},
                          Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    assert rule.fired == 1
    assert len([q for m, _, q in proxy.requests if m == "PUT" and "partNumber" in q]) == 3
    assert stored(direct, key) == data


def test_a_corrupted_body_with_its_original_checksum_is_refused_with_bad_digest(direct, moto, proxy, key):
    rule = proxy.corrupt_body(match("PUT", key_contains=key))
    client = moto.client("s3", endpoint_url=proxy.url, config=RETRYING)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(MiB), ChecksumAlgorithm="SHA256")
    assert raised.value.response["Error"]["Code"] == "BadDigest"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert rule.fired == 1  # a 400 is not retried
    assert stored(direct, key) is None


def test_a_body_corrupted_before_hashing_is_stored_with_a_consistent_checksum(direct, moto, proxy, key):
    data = os.urandom(MiB)
    rule = proxy.corrupt_body(match("PUT", key_contains=key), fix_checksum=True)
    client = moto.client("s3", endpoint_url=proxy.url)
    client.put_object(Bucket=BUCKET, Key=key, Body=data, ChecksumAlgorithm="SHA256")
    assert rule.fired == 1
    kept = stored(direct, key)
    assert len(kept) == len(data) and kept != data
    assert [i for i in range(len(data)) if kept[i] != data[i]] == [len(data) // 2]
    head = direct.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == b64sha256(kept) != b64sha256(data)


def test_checksum_headers_are_checked_and_fixed_as_s3_would():
    body = b"corrupted"
    good = [("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode()),
            ("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-content-sha256", "0" * 64)]
    assert check_or_fix(list(good[:1]), body, fix=False) is None
    assert check_or_fix(list(good), body, fix=False)[:2] == (400, "BadDigest")  # the CRC32
    assert check_or_fix([good[2]], body, fix=False)[:2] == (400, "XAmzContentSHA256Mismatch")
    fixed = list(good)
    assert check_or_fix(fixed, body, fix=True) is None
    assert check_or_fix(list(fixed), body, fix=False) is None
    assert dict(fixed)["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    assert check_or_fix([("x-amz-checksum-crc64nvme", "x")], body, fix=False)[1] == "FaultProxyError"


def put_in_thread(client, key, body):
    outcome: dict = {}

    def run():
        try:
            outcome["status"] = client.put_object(Bucket=BUCKET, Key=key, Body=body)["ResponseMetadata"][
                "HTTPStatusCode"]
        except Exception as exc:  # reported to the test through outcome
            outcome["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_held_after_upstream_answered_the_object_is_stored_while_the_client_waits(direct, moto, proxy, key):
    rule = proxy.hold(match("PUT", key_contains=key), when="after")
    thread, outcome = put_in_thread(moto.client("s3", endpoint_url=proxy.url), key, b"stored, unanswered")
    rule.wait_held(timeout=10)
    assert stored(direct, key) == b"stored, unanswered"
    assert thread.is_alive() and outcome == {}
    rule.release()
    thread.join(timeout=10)
    assert outcome == {"status": 200}


def test_held_before_forwarding_nothing_is_stored_until_released(direct, moto, proxy, key):
    rule = proxy.hold(match("PUT", key_contains=key))
    with pytest.raises(TimeoutError):
        rule.wait_held(timeout=0.05)
    thread, outcome = put_in_thread(moto.client("s3", endpoint_url=proxy.url), key, b"later")
    rule.wait_held(timeout=10)
    assert stored(direct, key) is None
    rule.release()
    thread.join(timeout=10)
    assert outcome == {"status": 200} and stored(direct, key) == b"later"


def test_a_client_killed_while_held_leaves_its_object_stored_and_the_proxy_serving(direct, moto, proxy, key):
    rule = proxy.hold(match("PUT", key_contains=key), when="after")
    script = f"import boto3; boto3.client('s3').put_object(Bucket='{BUCKET}', Key='{key}', Body=b'orphan')"
    client = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **moto.environ,
                                                                  "AWS_ENDPOINT_URL": proxy.url})
    try:
        rule.wait_held(timeout=30)
        assert stored(direct, key) == b"orphan"
    finally:
        client.kill()  # SIGKILL: stored in moto, the answer never seen
        client.wait(timeout=10)
    assert client.returncode == -signal.SIGKILL
    rule.release()
    assert moto.client("s3", endpoint_url=proxy.url).head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 6


def test_stop_lets_held_requests_go_and_is_idempotent(moto, key):
    proxy = S3FaultProxy(moto.endpoint_url).start()
    rule = proxy.hold(match("PUT"))
    thread, outcome = put_in_thread(moto.client("s3", endpoint_url=proxy.url, config=NO_RETRY), key, b"z")
    rule.wait_held(timeout=10)
    proxy.stop()
    proxy.stop()
    thread.join(timeout=10)
    assert not thread.is_alive() and outcome  # answered or cut off, never left hanging


def test_rules_match_by_method_key_and_query_and_clear_removes_them(moto, proxy, key):
    upload_part = match("PUT", query_has="partNumber")
    put_object = match("PUT", key_contains="api.log", query_lacks="partNumber")
    assert upload_part("PUT", "/b/api.log", {"partNumber": "1", "uploadId": "u"}, {})
    assert not upload_part("PUT", "/b/api.log", {}, {})
    assert put_object("PUT", "/b/x/api.log", {}, {}) and not put_object("PUT", "/b/api.log", {"partNumber": "1"}, {})
    assert match("post", query_has="uploadId")("POST", "/b/k", {"uploadId": "u"}, {})
    assert match("HEAD")("HEAD", "/b/k", {}, {}) and not match("HEAD")("GET", "/b/k", {}, {})

    rule = proxy.fail_with_500(match("HEAD"), times=2)
    proxy.clear()
    client = moto.client("s3", endpoint_url=proxy.url, config=NO_RETRY)
    client.put_object(Bucket=BUCKET, Key=key, Body=b"k")
    assert client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == 1
    assert rule.fired == 0
