"""The generated alert rules as Prometheus runs them: `promtool check rules` accepts them, and
`promtool test rules` (input series, expected alerts) shows each one fire when it should and
stay quiet when it should: a drill stale after 8 days, a backup older than 26 hours, archiving
failing, a certificate under 14 days, a scheduled runbook overdue, or never seen (absent())."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import yaml

from aep_ops.base.errors import StepFailed
from aep_ops.metrics import promtool, rules

ENV = "prod"
NODE = 'instance="ops1:9100",job="node"'


@dataclass(frozen=True)
class Job:  # the fields of aep_ops.timers.jobs.Job the rules read
    name: str
    runbook: str
    overdue_after_seconds: int


JOBS = [Job("backup-full", "backup.run", 26 * 3600), Job("backup-incr", "backup.run", 5400),
        Job("dr-drill", "dr.drill", 7 * 86400 + 9000)]
RULES = rules.build(ENV, jobs=JOBS, objectives={"rto_seconds": 3600, "rpo_seconds": 300})


def _rule(alert: str, runbook: str | None = None) -> dict:
    found = [r for r in RULES["groups"][0]["rules"] if r["alert"] == alert
             and (runbook is None or r["labels"]["runbook"] == runbook)]
    assert len(found) == 1, (alert, runbook)
    return found[0]


def _fires(alert: str, runbook: str | None = None, **labels: str) -> dict:
    """The alert as promtool must report it: the rule's labels over the expression's, and its
    annotations with those labels filled in."""
    rule = _rule(alert, runbook)
    every = {**labels, **rule["labels"]}
    text = {k: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: every[m.group(1)], v)
            for k, v in rule["annotations"].items()}
    return {"exp_labels": every, "exp_annotations": text}


def _series(name: str, values: str, **labels: str) -> dict:
    inner = ",".join([*(f'{k}="{v}"' for k, v in labels.items()), NODE])
    return {"series": f"{name}{{{inner}}}", "values": values}


def _case(series: list[dict], checks: list[tuple[str, str, list[dict]]], interval: str = "1m") -> dict:
    return {"interval": interval, "input_series": series or [_series("up", "1+0x300")],
            "alert_rule_test": [{"eval_time": t, "alertname": a, "exp_alerts": exp} for t, a, exp in checks]}


# Days-long cases are evaluated every hour (series sampled hourly, checks on the hour): every
# minute for eight days would take promtool minutes.
DAYS = [
    # A drill that last passed at time 0: quiet for 8 days, then stale; one that keeps passing stays quiet.
    _case([_series("aep_ops_dr_last_success_timestamp_seconds", "0+0x300", env=ENV)],
          [("7d23h", "AepOpsDrillStale", []),
           ("8d1h", "AepOpsDrillStale", [_fires("AepOpsDrillStale", env=ENV)]),
           ("8d1h", "AepOpsDrillNeverPassed", [])], interval="1h"),
    _case([_series("aep_ops_dr_last_success_timestamp_seconds", "0+3600x300", env=ENV)],
          [("8d1h", "AepOpsDrillStale", [])], interval="1h"),
    # No drill ever passed: absent() fires once the rules have waited 8 days.
    _case([], [("7d23h", "AepOpsDrillNeverPassed", []),
               ("8d1h", "AepOpsDrillNeverPassed", [_fires("AepOpsDrillNeverPassed", env=ENV)])], interval="1h"),
    # Runbooks whose metrics never appeared: the dead-man's switch fires through absent(), each after its own wait.
    _case([], [("7d2h", "AepOpsRunbookNeverSucceeded", [_fires("AepOpsRunbookNeverSucceeded", "backup.run", env=ENV)]),
               ("7d3h", "AepOpsRunbookNeverSucceeded", [
                   _fires("AepOpsRunbookNeverSucceeded", "backup.run", env=ENV),
                   _fires("AepOpsRunbookNeverSucceeded", "dr.drill", env=ENV)])], interval="1h"),
]

MINUTES = [
    # The newest backup: quiet at 25h59m, stale at 26h01m; a fresh one (its time tracks now) is quiet.
    _case([_series("aep_ops_backup_last_end_timestamp_seconds", "0+0x1600", env=ENV, repo="1", type="full")],
          [("25h59m", "AepOpsBackupStale", []),
           ("26h1m", "AepOpsBackupStale", [_fires("AepOpsBackupStale", env=ENV)])]),
    _case([_series("aep_ops_backup_last_end_timestamp_seconds", "0+60x1600", env=ENV, repo="1", type="incr")],
          [("26h1m", "AepOpsBackupStale", []), ("26h1m", "AepOpsBackupNeverTaken", [])]),
    # Archiving fails from the third minute on.
    _case([_series("aep_ops_archive_failing", "0 0 1 1 1", env=ENV)],
          [("1m", "AepOpsArchiveFailing", []),
           ("3m", "AepOpsArchiveFailing", [_fires("AepOpsArchiveFailing", env=ENV)])]),
    # Two certificates: 15 days left (quiet) and 10 days left (fires).
    _case([_series("aep_ops_cert_expiry_seconds", "1296000", env=ENV, certificate="www", endpoint="www:443",
                   host="web1"),
           _series("aep_ops_cert_expiry_seconds", "864000", env=ENV, certificate="api", endpoint="api:443",
                   host="web1")],
          [("0m", "AepOpsCertExpiring", [_fires("AepOpsCertExpiring", env=ENV, certificate="api", endpoint="api:443",
                                                host="web1")])]),
    # backup.run last succeeded at time 0: overdue after its shortest job's allowance (1h30m).
    _case([_series("aep_ops_runbook_last_success_timestamp_seconds", "0+0x200", runbook="backup.run", env=ENV)],
          [("1h29m", "AepOpsRunbookOverdue", []),
           ("1h31m", "AepOpsRunbookOverdue", [_fires("AepOpsRunbookOverdue", "backup.run", env=ENV)]),
           ("1h31m", "AepOpsRunbookNeverSucceeded", [])]),
    # backup.run never succeeded: absent() pending until its 1h30m have passed.
    _case([], [("1h29m", "AepOpsRunbookNeverSucceeded", []),
               ("1h31m", "AepOpsRunbookNeverSucceeded", [_fires("AepOpsRunbookNeverSucceeded", "backup.run",
                                                                env=ENV)])]),
    # A drill measured over the objectives.
    _case([_series("aep_ops_dr_rto_seconds", "4000", env=ENV), _series("aep_ops_dr_rpo_seconds", "10", env=ENV)],
          [("0m", "AepOpsDrillRtoOverObjective", [_fires("AepOpsDrillRtoOverObjective", env=ENV)]),
           ("0m", "AepOpsDrillRpoOverObjective", [])]),
]


@pytest.fixture
def rule_files(tmp_path):
    """Two test files on one rule file: the days-long cases evaluated hourly, the rest every minute."""
    (tmp_path / "aep-ops.rules.yml").write_text(rules.render(RULES))
    files = []
    for name, every, cases in (("days", "1h", DAYS), ("minutes", "1m", MINUTES)):
        path = tmp_path / f"aep-ops.rules.{name}.test.yml"
        path.write_text(yaml.safe_dump({"rule_files": ["aep-ops.rules.yml"], "evaluation_interval": every,
                                        "tests": cases}, sort_keys=False))
        files.append(path)
    return files


def test_promtool_accepts_the_generated_rules():
    assert "SUCCESS" in promtool.check_rules(rules.render(RULES))


def test_promtool_unit_tests_of_the_rules(rule_files):
    for path in rule_files:
        assert "SUCCESS" in promtool.test_rules(path), path.name


def test_promtool_would_catch_a_wrong_expectation(rule_files):
    """The test above proves something: the same file expecting the stale drill alert an hour early fails."""
    days = rule_files[0]
    data = yaml.safe_load(days.read_text())
    data["tests"][0]["alert_rule_test"][0]["exp_alerts"] = [_fires("AepOpsDrillStale", env=ENV)]
    days.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(StepFailed, match="AepOpsDrillStale"):
        promtool.test_rules(days)


def test_the_cli_writes_and_checks_the_rules_of_the_configured_schedules(cli, tmp_path):
    out = tmp_path / "rules" / "aep-ops-local.yml"
    out.parent.mkdir()
    done = cli("metrics.rules", "--env", "local", "--out", str(out), check_rc=0)
    assert f"written to {out}" in done.stderr
    text = out.read_text()
    assert text.startswith("# Generated by `inv metrics.rules --env local`")
    assert 'runbook="backup.run",env="local"' in text and 'runbook="dr.drill",env="local"' in text
    assert "SUCCESS" in promtool.check_rules(text)
    assert cli("metrics.rules", "--env", "local", check_rc=0).stdout == text, "printed or written, the same rules"
    checked = cli("metrics.check", "--env", "local", check_rc=0)
    assert "SUCCESS" in checked.stdout


def test_the_cli_refuses_a_bad_out_path_before_any_work(cli, tmp_path):
    done = cli("metrics.rules", "--out", str(tmp_path / "missing" / "r.yml"), check_rc=2)
    assert done.stderr.strip() == f"error: --out {tmp_path}/missing/r.yml: directory {tmp_path}/missing does not" \
                                  " exist; create it first"
    done = cli("metrics.rules", "--out", "", check_rc=2)
    assert "--out is empty" in done.stderr
