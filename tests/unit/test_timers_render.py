"""The units timers.render and timers.install write, judged by the real systemd-analyze (verify,
calendar, security --offline=yes: none of them needs systemd as PID 1)."""

from __future__ import annotations

import re
import shlex

import pytest

from aep_ops import config
from aep_ops.base.errors import ConfigError, UsageError, VerificationFailed
from aep_ops.timers.analyze import verify
from aep_ops.timers.jobs import scheduled_jobs
from aep_ops.timers.render import render
from aep_ops.timers.units import EXPOSURE_BAR
from tests.conftest import write_config

DEFAULT_JOBS = {"backup-check", "backup-full", "backup-incr", "backup-verify", "certs-check", "certs-renew",
                "doctor", "dr-drill", "logs-rotate", "logs-ship", "release-watchdog"}


def _settings(env="prod", text="", tmp_path=None, monkeypatch=None):
    if text:
        write_config(tmp_path / "aep-ops.yaml", text, monkeypatch)
    return config.load(env)


def _service_lines(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def test_the_issue_s_schedules_are_the_defaults_and_systemd_accepts_every_unit():
    rendered = render(_settings("prod"))
    jobs = {j.name: j for j in rendered.jobs}
    assert set(jobs) == DEFAULT_JOBS
    assert jobs["dr-drill"].schedule == "Mon *-*-* 04:00:00 UTC"  # checklists/drill-review.md: Monday 04:00
    assert jobs["dr-drill"].period_seconds == 7 * 86400
    assert jobs["dr-drill"].params == {"thorough": True}  # heap and heapallindexed checks, weekly
    drill_exec = shlex.split(_service_lines(rendered.files["aep-ops-prod-dr-drill.service"], "ExecStart")[0])
    assert drill_exec[1:] == ["dr.drill", "--env=prod", "--thorough"]
    assert jobs["backup-full"].params == {"type": "full"} and jobs["backup-full"].period_seconds == 86400
    assert jobs["backup-incr"].params == {"type": "incr"} and jobs["backup-incr"].period_seconds == 3600
    assert jobs["certs-check"].period_seconds == jobs["certs-renew"].period_seconds == 12 * 3600
    assert jobs["logs-rotate"].period_seconds == jobs["logs-ship"].period_seconds == 3600
    assert len(rendered.files) == 2 * len(DEFAULT_JOBS)
    scores = verify(rendered.files, EXPOSURE_BAR)  # raises on any refusal
    assert len(scores) == len(DEFAULT_JOBS) and max(scores.values()) <= EXPOSURE_BAR


def test_a_service_runs_the_runbook_non_interactively_as_the_cli_does():
    rendered = render(_settings("prod"))
    service = rendered.files["aep-ops-prod-backup-full.service"]
    timer = rendered.files["aep-ops-prod-backup-full.timer"]
    words = shlex.split(_service_lines(service, "ExecStart")[0])
    assert words[0].endswith("/aep-ops") and words[1:] == ["backup.run", "--env=prod", "--type=full"]
    assert _service_lines(service, "SuccessExitStatus") == ["3"]  # locked by another run: not a failure
    assert _service_lines(service, "StandardInput") == ["null"] and _service_lines(service, "Type") == ["oneshot"]
    assert _service_lines(service, "KillMode") == ["mixed"]
    assert int(_service_lines(service, "TimeoutStartSec")[0]) == 6 * 3600 + 120  # RunBackup's 6 h + start
    assert _service_lines(timer, "Persistent") == ["true"]
    assert _service_lines(timer, "FixedRandomDelay") == ["true"]
    assert 0 < int(_service_lines(timer, "RandomizedDelaySec")[0]) <= 600
    assert _service_lines(timer, "OnCalendar") == ["*-*-* 01:00:00 UTC"]


def test_production_jobs_with_approval_steps_carry_yes_and_say_why_others_do_not():
    files = render(_settings("prod")).files
    renew, check = files["aep-ops-prod-certs-renew.service"], files["aep-ops-prod-certs-check.service"]
    assert "--yes" in shlex.split(_service_lines(renew, "ExecStart")[0])
    assert "approved when its timer was installed" in renew
    assert "--yes" not in check  # read-only: nothing to approve
    staging = render(_settings("staging")).files["aep-ops-staging-certs-renew.service"]
    assert "--yes" not in staging


def test_per_environment_overrides_switch_jobs_off_add_jobs_and_chain_a_drill_after_each_full_backup(
        tmp_path, monkeypatch):
    settings = _settings("staging", """
environments:
  staging:
    timers:
      randomized_delay_seconds: 30
      drill_after_full_backup: true
      jobs:
        doctor: {enabled: false}
        dr-drill: {schedule: "Sun *-*-* 03:00:00 UTC"}
        greet-often: {runbook: demo.greet, schedule: "*:0/15", params: {name: "it's 100% $HOME"}}
""", tmp_path, monkeypatch)
    rendered = render(settings)
    names = {j.name for j in rendered.jobs}
    assert "doctor" not in names and {"greet-often", "drill-after-backup-full"} <= names
    files = rendered.files
    assert _service_lines(files["aep-ops-staging-dr-drill.timer"], "OnCalendar") == ["Sun *-*-* 03:00:00 UTC"]
    assert _service_lines(files["aep-ops-staging-dr-drill.timer"], "RandomizedDelaySec") == ["30"]
    full = files["aep-ops-staging-backup-full.service"]
    assert _service_lines(full, "OnSuccess") == ["aep-ops-staging-drill-after-backup-full.service"]
    after_full = files["aep-ops-staging-drill-after-backup-full.service"]
    assert "--thorough" not in _service_lines(after_full, "ExecStart")[0], "a daily drill stays quick"
    assert "aep-ops-staging-drill-after-backup-full.timer" not in files  # started by the backup, not a clock
    # A value with a quote, a % and a $ reaches the runbook unchanged: quoted, %% and $$ for systemd.
    greet = _service_lines(files["aep-ops-staging-greet-often.service"], "ExecStart")[0]
    assert '"--name=it\'s 100%% $$HOME"' in greet
    verify(files, EXPOSURE_BAR)


@pytest.mark.parametrize("jobs, message", [
    ("nightly: {schedule: daily}", "a new job needs both runbook and schedule"),
    ("x: {runbook: no.such, schedule: daily}", "no runbook 'no.such'"),
    ("backup-full: {params: {kind: full}}", "backup.run has no such parameter"),
    ("backup-full: {params: {repo: 9}}", "outside 1..2"),
    ("greet: {runbook: demo.greet, schedule: daily, params: {name: '  '}}", "non-empty printable"),
])
def test_a_bad_job_is_a_configuration_error_naming_the_key(tmp_path, monkeypatch, jobs, message):
    settings = _settings("dev", f"environments:\n  dev:\n    timers:\n      jobs:\n        {jobs}\n",
                         tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match=re.escape(message)):
        scheduled_jobs(settings)


def test_a_schedule_systemd_refuses_is_named(tmp_path, monkeypatch):
    settings = _settings("dev", "environments:\n  dev:\n    timers:\n      jobs:\n"
                                "        doctor: {schedule: 'every tuesday-ish'}\n", tmp_path, monkeypatch)
    with pytest.raises(UsageError, match="'every tuesday-ish' is not a systemd OnCalendar expression"):
        scheduled_jobs(settings)


def test_a_unit_systemd_refuses_or_one_too_exposed_is_not_installed(tmp_path, monkeypatch):
    settings = _settings("dev", f"timers:\n  command: {tmp_path}/missing/aep-ops\n", tmp_path, monkeypatch)
    with pytest.raises(VerificationFailed, match="is not executable"):
        verify(render(settings).files, EXPOSURE_BAR)
    monkeypatch.delenv("AEP_OPS_CONFIG")
    files = render(_settings("dev")).files
    loose = {name: re.sub(r"(?m)^(NoNewPrivileges|Protect\w+|Private\w+|Restrict\w+|CapabilityBoundingSet|"
                          r"SystemCall\w+)=.*\n", "", text) for name, text in files.items()}
    with pytest.raises(VerificationFailed, match="exposure above the bar"):
        verify(loose, EXPOSURE_BAR)


def test_paths_that_would_break_a_unit_file_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("AEP_OPS_STATE_DIR", str(tmp_path / "state with space"))
    with pytest.raises(ConfigError, match="state_dir: .* cannot go into a unit file"):
        render(config.load("dev"))


def test_a_metrics_directory_outside_the_state_directory_is_writable_for_the_service(tmp_path, monkeypatch):
    settings = _settings("dev", f"metrics:\n  dir: {tmp_path}/node-exporter\n", tmp_path, monkeypatch)
    service = render(settings).files["aep-ops-dev-doctor.service"]
    assert f"{tmp_path}/node-exporter" in _service_lines(service, "ReadWritePaths")[0].split()
