"""``timers.install`` into a unit directory under a test root, as a user runs it: units written
and enabled (the real systemctl, offline with --root: this machine has no systemd as PID 1, so
the live path, `enable --now` and `daemon-reload`, cannot run here), a second run changing
nothing, switched-off jobs removed, other environments' units untouched, production refused
without --yes, a run killed half-way resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import write_config
from tests.support.processes import latest_run_id, spawned, wait_applying

BIN = Path(sys.executable).parent
JOBS = 11  # the default schedule: see test_timers_render


def _configure(tmp_path, monkeypatch, extra: str = "") -> Path:
    units = tmp_path / "root" / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    write_config(tmp_path / "aep-ops.yaml", f"timers:\n  unit_dir: {units}\n{extra}", monkeypatch)
    return units


def _statuses(proc) -> list[str]:
    return [step["status"] for step in json.loads(proc.stdout)["steps"]]


def _snapshot(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir() if p.is_file()}


def _wants(directory: Path) -> set[str]:
    wants = directory / "timers.target.wants"
    return {p.name for p in wants.iterdir()} if wants.is_dir() else set()


def test_install_writes_and_enables_every_timer_and_a_second_run_changes_nothing(cli, tmp_path, monkeypatch):
    units = _configure(tmp_path, monkeypatch)
    first = cli("timers.install", "--env", "staging", check_rc=0)
    assert "result: succeeded" in first.stdout
    assert len([p for p in units.glob("aep-ops-staging-*.service")]) == JOBS
    timers = {p.name for p in units.glob("aep-ops-staging-*.timer")}
    assert len(timers) == JOBS and _wants(units) == timers
    enabled = subprocess.run(["systemctl", f"--root={units.parents[2]}", "is-enabled", "--",
                              "aep-ops-staging-dr-drill.timer"], capture_output=True, text=True)
    assert enabled.stdout.strip() == "enabled"
    before = _snapshot(units)
    time.sleep(0.01)
    second = cli("timers.install", "--env", "staging", "--json", check_rc=0)
    assert _statuses(second) == ["unchanged", "unchanged", "unchanged"]
    assert _snapshot(units) == before  # not one file rewritten


def test_a_job_switched_off_is_disabled_and_removed_and_other_units_are_left_alone(cli, tmp_path, monkeypatch):
    units = _configure(tmp_path, monkeypatch)
    cli("timers.install", "--env", "staging", check_rc=0)
    cli("timers.install", "--env", "staging-eu", "--set", "environments.staging-eu.backend=local", check_rc=2)
    mine = units / "aep-ops-staging-eu-x.service"  # another environment whose name starts the same
    mine.write_text("# aep-ops environment: staging-eu\n[Service]\nExecStart=/bin/true\n")
    hand = units / "aep-ops-staging-handmade.service"  # a person's own unit: no header of ours
    hand.write_text("[Service]\nExecStart=/bin/true\n")
    write_config(tmp_path / "aep-ops.yaml", (tmp_path / "aep-ops.yaml").read_text()
                 + "environments:\n  staging:\n    timers:\n      jobs:\n        doctor: {enabled: false}\n",
                 monkeypatch)
    out = cli("timers.install", "--env", "staging", check_rc=0)
    assert "remove 2 (aep-ops-staging-doctor.service, aep-ops-staging-doctor.timer)" in out.stdout
    assert not (units / "aep-ops-staging-doctor.timer").exists()
    assert "aep-ops-staging-doctor.timer" not in _wants(units)
    assert mine.exists() and hand.exists()
    assert len(_wants(units)) == JOBS - 1


def test_production_needs_yes_and_then_installs(cli, tmp_path, monkeypatch):
    units = _configure(tmp_path, monkeypatch)
    refused = cli("timers.install", "--env", "prod", check_rc=4)
    assert "--yes" in refused.stderr
    assert not list(units.glob("*.service"))
    dry = cli("timers.install", "--env", "prod", "--dry-run", check_rc=0)
    assert "would change: in " in dry.stdout and not list(units.glob("*.service"))
    cli("timers.install", "--env", "prod", "--yes", check_rc=0)
    renew = (units / "aep-ops-prod-certs-renew.service").read_text()
    assert '"certs.renew" "--env=prod" "--yes"' in renew


def test_bad_input_is_one_line_and_exit_2_with_nothing_written(cli, tmp_path, monkeypatch):
    units = _configure(tmp_path, monkeypatch, "environments:\n  dev:\n    timers:\n      jobs:\n"
                                              "        doctor: {schedule: 'sometime soon'}\n")
    out = cli("timers.install", "--env", "dev", check_rc=2)
    assert "'sometime soon' is not a systemd OnCalendar expression" in out.stderr
    assert "Traceback" not in out.stderr and not list(units.iterdir())
    elsewhere = cli("timers.install", "--env", "staging", "--set", f"timers.unit_dir={tmp_path}/units", check_rc=2)
    assert "use /etc/systemd/system, or ROOT/etc/systemd/system" in elsewhere.stderr


def test_a_run_killed_while_writing_resumes_and_finishes(cli, tmp_path, monkeypatch, state_dir):
    units = _configure(tmp_path, monkeypatch)
    # A FIFO where a unit goes: reading the old file to compare blocks, so the kill lands inside
    # the write step with some units written and others not (deterministically, no timing luck).
    blocker = units / "aep-ops-staging-logs-ship.service"
    os.mkfifo(blocker)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with spawned([str(BIN / "inv"), "timers.install", "--env", "staging"], log=tmp_path / "run.log", env=env) as proc:
        run_id = wait_applying(state_dir, "write_units", proc=proc)
        deadline = time.monotonic() + 30
        while not list(units.glob("aep-ops-staging-backup-*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert list(units.glob("aep-ops-staging-backup-*")) and not _wants(units)  # half done
    blocker.unlink()
    resumed = cli("timers.install", "--env", "staging", "--resume", run_id, check_rc=0)
    assert "result: succeeded" in resumed.stdout
    assert latest_run_id(state_dir, "timers.install") == run_id
    assert len(_wants(units)) == JOBS and len(list(units.glob("aep-ops-staging-*.service"))) == JOBS
    again = cli("timers.install", "--env", "staging", "--json", check_rc=0)
    assert _statuses(again) == ["unchanged", "unchanged", "unchanged"]
