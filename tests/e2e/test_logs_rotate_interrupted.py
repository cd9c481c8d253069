"""logs.rotate killed mid-way, then resumed, on a real sshd host with real logrotate and a writer at
20,000 lines/s: whatever state the kill left (a file renamed but never compressed or indexed, a
writer never told to reopen), every line still reaches S3 exactly once."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from aep_ops.testing.logwriter import sequence_report
from tests.support.log_fleet import configured_log_fleet, next_second
from tests.support.processes import kill_matching, latest_run_id, spawned

BIN = Path(sys.executable).parent


@pytest.fixture
def fleet(ssh_host_factory, moto_account, tmp_path, monkeypatch):
    with configured_log_fleet(1, ssh_host_factory, moto_account, tmp_path, monkeypatch,
                              logs_extra="      reopen_timeout: 60\n") as fleet:
        yield fleet


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:.0f} s"
        time.sleep(0.02)


def stop_rotate_ship_and_check(fleet, cli) -> None:
    """The writer stops, its last lines are rotated and shipped: every line is in S3 exactly once."""
    next_second()
    last = fleet.stop_writers()["log1"]
    cli("logs.rotate", "--env", "staging", check_rc=0)
    cli("logs.ship", "--env", "staging", check_rc=0)
    host = fleet.hosts[0]
    assert host.rotated() == []
    report = sequence_report(fleet.s3_lines(host.name) + host.log.read_text().splitlines())
    assert report["missing"] == [] and report["duplicates"] == [] and report["invalid"] == 0
    assert report["max"] == last


def test_killed_inside_logrotate_then_resumed_loses_nothing(fleet, cli, state_dir, tmp_path):
    host = fleet.hosts[0]
    fleet.start_writers(rate=20000)
    os.kill(host.writer.pid, signal.SIGSTOP)  # it cannot reopen: the postrotate waits for it
    config = str(host.directory / "logrotate.conf")
    with spawned([str(BIN / "inv"), "logs.rotate", "--env", "staging"], log=tmp_path / "rotate.log",
                 env={**os.environ}) as proc:
        wait_until(lambda: any(not p.name.endswith(".gz") for p in host.rotated()), "the rename")
        os.killpg(proc.pid, signal.SIGKILL)  # aep-ops dies ...
        proc.wait(timeout=30)
    kill_matching(config)  # ... and logrotate on the host with it, inside its postrotate
    stuck = host.rotated()
    assert len(stuck) == 1 and not stuck[0].name.endswith(".gz")  # renamed, never compressed
    os.kill(host.writer.pid, signal.SIGCONT)
    run_id = latest_run_id(state_dir, "logs.rotate")

    next_second()
    resumed = cli("logs.rotate", "--env", "staging", "--resume", run_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"run {run_id}" in resumed.stdout
    waiting = cli("logs.ship", "--env", "staging", check_rc=0)
    assert "shipped: 2 file(s)" in waiting.stdout  # the stuck file is final now: a newer rotation exists
    stop_rotate_ship_and_check(fleet, cli)


def test_a_writer_left_on_a_rotated_file_is_told_again(fleet, cli):
    host = fleet.hosts[0]
    fleet.start_writers(rate=20000)
    orphan = host.directory / "api.log-20261207-1796650000"
    os.rename(host.log, orphan)  # what a logrotate killed between its rename and its signal leaves
    wait_until(lambda: orphan.stat().st_size > 100_000, "writing on into the renamed file")
    done = cli("logs.rotate", "--env", "staging", check_rc=0)
    assert f"still wrote to a rotated {host.log}: signalled" in done.stdout
    links = [os.readlink(f"/proc/{host.writer.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{host.writer.pid}/fd")]
    assert str(host.log) in links and str(orphan) not in links
    stop_rotate_ship_and_check(fleet, cli)
