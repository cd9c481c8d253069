"""A job's command run the way its timer (or cron) runs it: only the unit's Environment=, its
WorkingDirectory=, no terminal, stdin from /dev/null. systemd cannot be PID 1 here, so the test
starts the ExecStart= line itself, undoing systemd's quoting exactly as systemd does ($$, %%,
"..."). The run must leave what an on-call engineer reads the next morning: JSON logs, the
journal, timers.list's last result; a run that finds the lock taken exits 3, which the unit
counts as success."""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from aep_ops import config
from aep_ops.timers.render import render
from tests.conftest import write_config
from tests.support.processes import spawned, wait_applying

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
JOB_CONFIG = """
environments:
  dev:
    timers:
      jobs:
        greet: {runbook: demo.greet, schedule: "*-*-* *:00/10:00 UTC", params: {name: "timer's 5% $HOME"}}
"""


def _systemd_words(line: str) -> list[str]:
    return [w.replace("$$", "$").replace("%%", "%") for w in shlex.split(line)]


def _as_systemd_runs(service: str, workdir: Path | None = None) -> subprocess.CompletedProcess:
    values: dict[str, list[str]] = {}
    for line in service.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values.setdefault(key, []).append(value)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "HOME": "/root", "USER": "root",
           "LOGNAME": "root", "SHELL": "/bin/sh"}
    for assignment in values.get("Environment", []):
        key, _, value = _systemd_words(assignment)[0].partition("=")
        env[key] = value
    return subprocess.run(_systemd_words(values["ExecStart"][0]), env=env, cwd=workdir or values["WorkingDirectory"][0],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, start_new_session=True, timeout=120)


def _events(state_dir: Path, event: str) -> list[dict]:
    lines = (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def test_the_service_command_runs_the_runbook_without_a_terminal_and_leaves_its_evidence(
        cli, tmp_path, monkeypatch, state_dir):
    write_config(tmp_path / "aep-ops.yaml", JOB_CONFIG, monkeypatch)
    service = render(config.load("dev")).files["aep-ops-dev-greet.service"]
    done = _as_systemd_runs(service)
    assert done.returncode == 0, done.stderr
    assert (state_dir / "demo" / "greeting.txt").read_text() == "Hello, timer's 5% $HOME!\n"
    finished = [e for e in _events(state_dir, "run.finish") if e.get("runbook") == "demo.greet"]
    assert finished and finished[-1]["status"] == "succeeded" and finished[-1]["env"] == "dev"
    assert not any(line.startswith("[1/") for line in done.stderr.splitlines())  # no terminal: JSON, not progress
    metrics = (state_dir / "metrics" / "aep_ops_run_demo.greet@dev.prom").read_text()
    assert 'aep_ops_runbook_last_result{env="dev",result="succeeded",runbook="demo.greet"} 1.0' in metrics
    assert 'aep_ops_runbook_last_success_timestamp_seconds{env="dev",runbook="demo.greet"}' in metrics
    listed = json.loads(cli("timers.list", "--env", "dev", "--json").stdout)
    greet = next(r for r in listed if r["job"] == "greet")
    assert greet["last_result"] == "succeeded" and greet["overdue"] is False
    assert greet["next"] and greet["next"].endswith("0:00Z")
    # The dead-man's view: the same success, read after the job's window has passed, is overdue.
    from datetime import datetime, timedelta, timezone

    from aep_ops.timers.listing import rows

    later = datetime.now(timezone.utc) + timedelta(seconds=greet["overdue_after_seconds"] + 60)
    late = next(r for r in rows(config.load("dev"), now=later) if r["job"] == "greet")
    assert late["overdue"] is True and late["last_result"] == "succeeded"
    text = cli("timers.list", "--env", "dev")
    assert text.returncode == 5 and "overdue or never succeeded:" in text.stderr and "greet" not in text.stderr


def test_a_run_that_finds_the_lock_taken_exits_3_which_the_unit_counts_as_success(tmp_path, monkeypatch, state_dir):
    write_config(tmp_path / "aep-ops.yaml", JOB_CONFIG, monkeypatch)
    service = render(config.load("dev")).files["aep-ops-dev-greet.service"]
    assert "SuccessExitStatus=3" in service.splitlines()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with spawned([str(BIN / "inv"), "demo.greet", "--env", "dev", "--pause", "60"], log=tmp_path / "held.log",
                 env=env) as holder:
        wait_applying(state_dir, "ensure_greeting", proc=holder)
        done = _as_systemd_runs(service, workdir=tmp_path)
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "locked by run" in done.stderr


def test_the_cron_line_runs_the_same_job_under_flock(tmp_path, monkeypatch, state_dir):
    write_config(tmp_path / "aep-ops.yaml", JOB_CONFIG, monkeypatch)
    crontab = render(config.load("dev"), "cron").files["aep-ops-dev"]
    line = next(x for x in crontab.splitlines() if "AEP_OPS_JOB=greet" in x)
    minute, hour, day, month, weekday, user, command = line.split(None, 6)
    command = command.replace("\\%", "%")  # what cron itself does before handing the line to sh
    assert (minute, hour, user) == ("0-59/10", "*", "root")
    cron_env = {"PATH": "/usr/bin:/bin", "HOME": "/root", "LOGNAME": "root", "SHELL": "/bin/sh"}
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "locks").mkdir(exist_ok=True)
    ran = subprocess.run(["/bin/sh", "-c", command], env=cron_env, stdin=subprocess.DEVNULL, cwd="/",
                         capture_output=True, text=True, start_new_session=True, timeout=120)
    assert ran.returncode == 0, ran
    assert (state_dir / "demo" / "greeting.txt").read_text() == "Hello, timer's 5% $HOME!\n"
    with open(state_dir / "locks" / "cron-dev-greet.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # an earlier start still running
        blocked = subprocess.run(["/bin/sh", "-c", command], env=cron_env, stdin=subprocess.DEVNULL, cwd="/",
                                 capture_output=True, text=True, start_new_session=True, timeout=120)
    assert blocked.returncode == 3
