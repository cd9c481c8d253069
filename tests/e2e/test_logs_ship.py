"""logs.ship as a user runs it: real sshd hosts (files read over SFTP, hashed on the host), real
logrotate under a writer at 20,000 lines/s, S3 on the moto server. Every line in S3 exactly once,
found again by logs.fetch; a second run ships nothing."""

from __future__ import annotations

import json

import pytest

from aep_ops.testing.logwriter import sequence_report
from tests.conftest import write_config
from tests.support.log_fleet import configured_log_fleet, next_second


@pytest.fixture
def fleet(ssh_host_factory, moto_account, tmp_path, monkeypatch):
    with configured_log_fleet(2, ssh_host_factory, moto_account, tmp_path, monkeypatch) as fleet:
        yield fleet


def fetched(cli, *args: str) -> list[dict]:
    done = cli("logs.fetch", "--env", "staging", "--since", "1h", "--json", *args, check_rc=0)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_every_line_in_s3_exactly_once_and_fetched_in_order(fleet, cli, state_dir):
    fleet.start_writers(rate=20000)
    for _ in range(3):
        cli("logs.rotate", "--env", "staging", check_rc=0)
        shipped = cli("logs.ship", "--env", "staging")
        assert shipped.returncode == 0 and "shipped: 2 file(s)" in shipped.stdout, shipped.stdout
        next_second()
    last = fleet.stop_writers()
    cli("logs.rotate", "--env", "staging", check_rc=0)  # the last lines: rotated, not shipped yet

    # fetch merges S3, the rotated files still on the hosts and the live files: each line once
    lines = fetched(cli, "--host", "log1")
    report = sequence_report(entry["line"] for entry in lines)
    assert report["missing"] == [] and report["duplicates"] == [] and report["max"] == last["log1"]
    stamps = [entry["time"] for entry in lines]
    assert stamps == sorted(stamps) and {entry["host"] for entry in lines} == {"log1"}

    cli("logs.ship", "--env", "staging", check_rc=0)
    for host in fleet.hosts:
        report = sequence_report(fleet.s3_lines(host.name))
        assert report["missing"] == [] and report["duplicates"] == [] and report["invalid"] == 0
        assert report["max"] == last[host.name]
        assert host.rotated() == [] and len(host.shipped()) == 4  # moved only after S3 held them
    keys = fleet.s3_objects()
    assert len(keys) == 8 and all(k.startswith("staging/api/log") for k in keys)
    manifest = [json.loads(line) for line in (state_dir / "logs" / "shipped-staging.jsonl").read_text().splitlines()]
    assert sorted(e["key"] for e in manifest) == sorted(keys)
    assert sum(e["lines"] for e in manifest) == last["log1"] + last["log2"] + 2
    head = fleet.moto.client("s3").head_object(Bucket=fleet.bucket, Key=manifest[0]["key"], ChecksumMode="ENABLED")
    assert head["ServerSideEncryption"] == "AES256" and head["ChecksumSHA256"] == manifest[0]["sha256"]

    again = cli("logs.ship", "--env", "staging", check_rc=0)
    assert "no rotated file waits to be shipped" in again.stdout
    merged = fetched(cli, "--grep", '"seq": ?1[0-9]{4},')
    assert {e["host"] for e in merged} == {"log1", "log2"}
    assert [e["time"] for e in merged] == sorted(e["time"] for e in merged)


def test_bad_input_is_one_line_and_exit_2(fleet, cli):
    for args, words in ((["--bucket", " "], "--bucket is empty"), (["--bucket", "Not_A_Bucket"], "not a valid S3"),
                        (["--max-bandwidth", "fast"], "--max-bandwidth"), (["--paths", ""], "--paths is empty"),
                        (["--role", "db"], "has that role")):
        done = cli("logs.ship", "--env", "staging", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr
    for args, words in ((["--since", "yesterday"], "--since"), (["--grep", "("], "not a regular expression"),
                        (["--host", "nosuch"], "no such host"), (["--since", "2026-12-07T10:00:00"], "UTC offset")):
        done = cli("logs.fetch", "--env", "staging", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr


def test_production_needs_yes(fleet, cli, tmp_path, monkeypatch):
    write_config(tmp_path / "aep-ops.yaml", fleet.config("prod", production=True), monkeypatch)
    for runbook in ("logs.rotate", "logs.ship", "logs.retention"):
        done = cli(runbook, "--env", "prod")
        assert done.returncode == 4, (runbook, done.stdout, done.stderr)


def test_a_host_down_does_not_hold_back_the_others(fleet, cli):
    fleet.start_writers(rate=20000)
    cli("logs.rotate", "--env", "staging", check_rc=0)
    last = fleet.stop_writers()
    cli("logs.ship", "--env", "staging", "--role", "api", "--paths", "*/log1/*", check_rc=0)  # log1's only
    fleet.hosts[1].ssh.stop()
    done = cli("logs.ship", "--env", "staging")
    assert done.returncode == 1 and "log2" in done.stdout  # named; nothing of log2's is touched
    assert len(fleet.hosts[1].rotated()) == 1
    found = cli("logs.fetch", "--env", "staging", "--since", "1h", "--json")
    assert found.returncode == 0 and "warning: log2: its files cannot be read" in found.stderr
    lines = [json.loads(line) for line in found.stdout.splitlines()]
    report = sequence_report(entry["line"] for entry in lines if entry["host"] == "log1")
    assert report["missing"] == [] and report["duplicates"] == [] and report["max"] == last["log1"]
