"""logs.ship when S3 or the process fails, with a fault-injecting proxy between aep-ops and the moto
server (moto alone accepts a body that does not match its checksum, so the proxy plays S3's part:
aep_ops/testing/s3proxy.py). Each case ends the way a user checks it: every line in S3 exactly
once, nothing left unshipped on the host, nothing deleted that S3 did not verify, no abandoned
multipart upload."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from aep_ops.testing.logwriter import sequence_report
from aep_ops.testing.s3proxy import S3FaultProxy, match
from tests.conftest import write_config
from tests.support.log_fleet import start_log_fleet
from tests.support.processes import spawned

BIN = Path(sys.executable).parent
SMALL, BIG = "api.log-20261207-1796650001.gz", "api.log-20261207-1796650002.gz"
MULTIPART = "      multipart_threshold_mb: 5\n      part_size_mb: 5\n      concurrency: 2\n"


@pytest.fixture
def fleet(ssh_host_factory, moto_account, tmp_path, monkeypatch):
    moto_account.use_in(monkeypatch)
    fleet = start_log_fleet(1, ssh_host_factory, moto_account)
    proxy = S3FaultProxy(moto_account.endpoint_url).start()
    fleet.endpoint = proxy.url
    fleet.proxy = proxy
    try:
        write_config(tmp_path / "aep-ops.yaml", fleet.config(logs_extra=MULTIPART), monkeypatch)
        write_rotated(fleet.hosts[0].directory)
        yield fleet
    finally:
        proxy.stop()
        fleet.stop()


def write_rotated(directory: Path) -> None:
    """Two rotated files: one below the multipart threshold, one of three 5 MB parts (random
    payloads, so gzip cannot shrink it under the threshold); seq 0..N across both."""
    seq = 0
    for name, count, pad in ((SMALL, 2000, 16), (BIG, 55000, 160)):
        lines = []
        for _ in range(count):
            lines.append(json.dumps({"seq": seq, "time": 1796650000000 + seq, "pad": os.urandom(pad).hex()}))
            seq += 1
        (directory / name).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
    assert (directory / BIG).stat().st_size > 10 * 1024 * 1024


def assert_all_shipped_once(fleet, state_dir: Path) -> None:
    host = fleet.hosts[0]
    report = sequence_report(fleet.s3_lines(host.name))
    assert report["missing"] == [] and report["duplicates"] == [] and report["count"] == 57000
    assert host.rotated() == [] and [p.name for p in host.shipped()] == [SMALL, BIG]
    objects = fleet.s3_objects()
    for path in host.shipped():
        key = next(k for k in objects if k.endswith(path.name))
        assert objects[key] == path.read_bytes()  # the bytes, not only the lines
    manifest = (state_dir / "logs" / "shipped-staging.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["key"].rsplit("/", 1)[1] for line in manifest) == [SMALL, BIG]
    uploads = fleet.moto.client("s3").list_multipart_uploads(Bucket=fleet.bucket).get("Uploads") or []
    assert uploads == []


def ship(cli, *args):
    return cli("logs.ship", "--env", "staging", *args, timeout=180)


# Where the run is killed: the request the proxy holds (before it reaches S3, or after S3 answered
# and before the answer reaches aep-ops) while kill -9 lands.
KILL_POINTS = {
    "put-sent-not-stored": (match("PUT", key_contains=SMALL, query_lacks="partNumber"), "before"),
    "put-stored-answer-lost": (match("PUT", key_contains=SMALL, query_lacks="partNumber"), "after"),
    "second-part-in-flight": (match("PUT", key_contains=BIG, query_has="partNumber"), "before"),
    "complete-stored-answer-lost": (match("POST", key_contains=BIG, query_has="uploadId"), "after"),
    "verify-head-answer-lost": (match("HEAD", key_contains=BIG), "after"),
}


@pytest.mark.parametrize("point", sorted(KILL_POINTS))
def test_kill_9_at_each_boundary_then_rerun_ships_each_line_once(fleet, cli, state_dir, tmp_path, point):
    predicate, when = KILL_POINTS[point]
    rule = fleet.proxy.hold(predicate, when=when)
    argv = [str(BIN / "inv"), "logs.ship", "--env", "staging"]
    with spawned(argv, log=tmp_path / "killed.log", env={**os.environ}) as proc:
        rule.wait_held(timeout=60)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    rule.release()
    held_file = SMALL if point.startswith("put") else BIG
    assert held_file in [p.name for p in fleet.hosts[0].rotated()]  # not marked: it was never verified
    again = ship(cli)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_all_shipped_once(fleet, state_dir)
    if point == "second-part-in-flight":
        assert "aborted abandoned uploads: 1" in again.stdout
    if point in ("put-stored-answer-lost", "complete-stored-answer-lost", "verify-head-answer-lost"):
        assert "already in S3, now marked" in again.stdout


def test_500_and_a_dropped_connection_are_retried(fleet, cli, state_dir):
    errors = fleet.proxy.fail_with_500(match("PUT", key_contains=SMALL), times=2)
    dropped = fleet.proxy.drop_connection(match("PUT", key_contains=BIG, query_has="partNumber"))
    done = ship(cli)
    assert done.returncode == 0, done.stdout
    assert (errors.fired, dropped.fired) == (2, 1)
    assert_all_shipped_once(fleet, state_dir)


def test_a_body_damaged_in_transit_is_refused_and_sent_again(fleet, cli, state_dir):
    damaged = fleet.proxy.corrupt_body(match("PUT", key_contains=SMALL), fix_checksum=False)  # S3: BadDigest
    done = ship(cli)
    assert done.returncode == 0, done.stdout
    assert damaged.fired == 1
    assert_all_shipped_once(fleet, state_dir)


def test_an_object_stored_wrong_is_caught_by_the_local_checksum_and_replaced(fleet, cli, state_dir):
    # corrupted before it was hashed: S3 stores the wrong bytes with a checksum that matches them;
    # only the SHA-256 computed on the host from the file tells
    stored_wrong = fleet.proxy.corrupt_body(match("PUT", key_contains=SMALL), fix_checksum=True)
    done = ship(cli)
    assert done.returncode == 0, done.stdout
    assert stored_wrong.fired == 1
    assert_all_shipped_once(fleet, state_dir)


def test_s3_down_mid_upload_keeps_the_files_and_the_next_run_ships_them(fleet, cli, state_dir):
    held = fleet.proxy.hold(match("PUT", key_contains=BIG, query_has="partNumber"))
    argv = [str(BIN / "inv"), "logs.ship", "--env", "staging"]
    log = state_dir.parent / "down.log"
    with spawned(argv, log=log, env={**os.environ}) as proc:
        held.wait_held(timeout=60)
        fleet.proxy.stop()  # S3 goes away with a part in flight
        assert proc.wait(timeout=120) == 1
    output = log.read_text()
    assert "not shipped (kept on its host)" in output and BIG in output
    assert BIG in [p.name for p in fleet.hosts[0].rotated()]  # kept: S3 never verified it
    proxy = S3FaultProxy(fleet.moto.endpoint_url).start()
    try:
        fleet.endpoint = proxy.url
        write_config(state_dir.parent / "aep-ops.yaml", fleet.config(logs_extra=MULTIPART), pytest.MonkeyPatch())
        done = ship(cli, "--max-bandwidth", "50MB")
        assert done.returncode == 0, done.stdout
    finally:
        proxy.stop()
    assert_all_shipped_once(fleet, state_dir)


def test_a_foreign_object_at_the_key_is_never_overwritten(fleet, cli, state_dir):
    s3 = fleet.moto.client("s3")
    key = f"staging/api/log1/2026/12/07/{SMALL}"
    s3.put_object(Bucket=fleet.bucket, Key=key, Body=b"someone else's object", ChecksumAlgorithm="SHA256")
    done = ship(cli)
    assert done.returncode == 1
    assert "already holds another object" in done.stdout and SMALL in done.stdout
    assert s3.get_object(Bucket=fleet.bucket, Key=key)["Body"].read() == b"someone else's object"
    assert SMALL in [p.name for p in fleet.hosts[0].rotated()]  # left on its host
    assert BIG in [p.name for p in fleet.hosts[0].shipped()]  # the other file shipped all the same
