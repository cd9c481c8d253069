"""logs.rotate as a user runs it, on real sshd hosts with real logrotate, while a real writer on
each host appends 20,000 sequence-numbered lines a second and reopens its file on USR2: no line
is lost or doubled across rotations; the file is installed once and only after `logrotate -d`
accepted it; a copytruncate source reports its loss window."""

from __future__ import annotations

import gzip
import re

import pytest

from aep_ops.testing.logwriter import sequence_report
from tests.conftest import write_config
from tests.support.log_fleet import configured_log_fleet, next_second


@pytest.fixture
def fleet(ssh_host_factory, moto_account, tmp_path, monkeypatch):
    with configured_log_fleet(2, ssh_host_factory, moto_account, tmp_path, monkeypatch) as fleet:
        yield fleet


def test_rotations_under_load_lose_and_double_no_line(fleet, cli):
    fleet.start_writers(rate=20000)
    first = cli("logs.rotate", "--env", "staging", check_rc=0)
    assert "changed - write the logrotate file on 2 host(s): log1, log2" in first.stdout
    for _ in range(2):
        next_second()
        again = cli("logs.rotate", "--env", "staging", check_rc=0)
        assert "unchanged - every host's logrotate file is up to date" in again.stdout  # not rewritten
    last = fleet.stop_writers()
    for host in fleet.hosts:
        rotated = host.rotated()
        assert len(rotated) == 3 and all(p.name.endswith(".gz") for p in rotated), rotated
        lines = []
        for path in rotated:
            lines += gzip.decompress(path.read_bytes()).decode().splitlines()
        lines += host.log.read_text().splitlines()
        report = sequence_report(lines)
        assert report["missing"] == [] and report["duplicates"] == [] and report["invalid"] == 0
        assert report["max"] == last[host.name] and report["count"] > 20000
        index = sorted((host.directory / ".aep-ops-index").glob("*.idx"))
        assert len(index) == 3  # each rotated file indexed for logs.ship (lines, first, last)
        assert int(index[0].read_text().splitlines()[0]) == len(gzip.decompress(rotated[0].read_bytes()).splitlines())


def test_a_file_logrotate_rejects_is_not_installed(fleet, cli, tmp_path, monkeypatch):
    cli("logs.rotate", "--env", "staging", check_rc=0)
    installed = (fleet.hosts[0].directory / "logrotate.conf").read_text()
    sources = (f"        - {{name: api, kind: node-api, role: api, paths: ['{fleet.base}/{{host}}/api.log'],"
               f" pidfile: '{fleet.base}/{{host}}/api.pid', su: 'nosuchuser nosuchgroup'}}\n")
    write_config(tmp_path / "aep-ops.yaml", fleet.config(sources=sources), monkeypatch)
    bad = cli("logs.rotate", "--env", "staging")
    assert bad.returncode == 1
    assert "logrotate -d rejected the file" in bad.stdout and "nothing installed" in bad.stdout
    assert "nosuchuser" in bad.stdout
    assert (fleet.hosts[0].directory / "logrotate.conf").read_text() == installed
    assert not list(fleet.hosts[0].directory.glob("logrotate.conf.aep-ops-new"))


def test_copytruncate_reports_the_window_it_lost(fleet, cli, tmp_path, monkeypatch):
    sources = (f"        - {{name: pg, kind: postgresql, role: api, paths: ['{fleet.base}/{{host}}/pg.log'],"
               " size: '1'}\n")
    write_config(tmp_path / "aep-ops.yaml", fleet.config(sources=sources), monkeypatch)
    for host in fleet.hosts:
        (host.directory / "pg.log").write_text("2026-12-07 14:20:44.000 UTC [42] LOG:  checkpoint starting\n" * 1000)
    done = cli("logs.rotate", "--env", "staging", check_rc=0)
    assert done.stdout.count("copytruncate of") == 2 and "were lost" in done.stdout
    assert re.search(r"log1: copytruncate of \S+/log1/pg.log: the lines written in a window of at most"
                     r" \d+(\.\d+)? ms were lost", done.stdout)


def test_bad_input_is_one_line_and_exit_2(fleet, cli):
    for args, words in ((["--role", "web"], "no log source of environment staging has that role"),
                        (["--role", " "], "--role is empty")):
        done = cli("logs.rotate", "--env", "staging", *args)
        assert done.returncode == 2, done.stderr
        assert words in done.stderr and "Traceback" not in done.stderr
