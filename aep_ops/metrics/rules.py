"""Prometheus alerting rules for one environment, generated from its schedules and objectives.

A missed run is as dangerous as a failed one, so every scheduled runbook gets a dead-man's switch:
its last success older than the longest gap its jobs allow (aep_ops.timers.jobs:
``overdue_after_seconds``), or, when it never succeeded, ``absent()`` for as long. The objectives
add: no passing drill in 8 days, newest backup older than 26 hours, archiving failing, a
certificate within 14 days of expiry, a drill's RTO or RPO over the objective. Thresholds are
``metrics.*`` of the environment (defaults in THRESHOLDS). Annotations use labels only, so
``promtool test rules`` can state them exactly.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

THRESHOLDS = {"drill_max_age_days": 8, "backup_max_age_hours": 26, "cert_min_days": 14}
DAY, HOUR = 86400, 3600


def duration(seconds: int) -> str:
    """A Prometheus duration, also read by people: ``8d``, ``26h``, ``25h24m``, ``7d2h30m``, ``90s``
    (days from two days on, or when whole)."""
    left, out = int(seconds), ""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", 60), ("s", 1)):
        if left >= size and (unit != "d" or left >= 2 * DAY or left % DAY == 0):
            out += f"{left // size}{unit}"
            left %= size
    return out or "0s"


def overdue_after(jobs: Iterable[Any]) -> dict[str, tuple[int, list[str]]]:
    """Runbook id -> (seconds without a success before it is overdue, its job names). The run
    metrics are per runbook, so a runbook with several jobs (a daily full and an hourly incr
    backup) is overdue after the shortest of their allowances."""
    out: dict[str, tuple[int, list[str]]] = {}
    for job in jobs:
        seconds, names = out.get(job.runbook, (None, []))
        allowed = int(job.overdue_after_seconds)
        out[job.runbook] = (allowed if seconds is None else min(seconds, allowed), sorted([*names, job.name]))
    return dict(sorted(out.items()))


def build(env: str, *, jobs: Iterable[Any] = (), objectives: dict[str, Any] | None = None,
          thresholds: dict[str, Any] | None = None, self_hosted: bool = True) -> dict[str, Any]:
    """The rule file (as data) for environment ``env``. ``self_hosted``: backups and archiving are
    aep-ops's (pgBackRest), so their alerts apply; a managed database (RDS) has none."""
    limits = {**THRESHOLDS, **{k: v for k, v in (thresholds or {}).items() if k in THRESHOLDS and v}}
    objectives = objectives or {}
    e = _q(env)
    drill_age = int(limits["drill_max_age_days"]) * DAY
    rules = [
        _alert("AepOpsDrillStale", f"time() - max by (env) (aep_ops_dr_last_success_timestamp_seconds{{env={e}}})"
               f" > {drill_age}", "critical", f"No DR drill passed on {{{{ $labels.env }}}} for more than"
               f" {duration(drill_age)}", "dr.drill"),
        _alert("AepOpsDrillNeverPassed", f"absent(aep_ops_dr_last_success_timestamp_seconds{{env={e}}})", "critical",
               f"No DR drill has passed on {{{{ $labels.env }}}} in the {duration(drill_age)} these rules have"
               " been watching", "dr.drill", wait=drill_age),
    ]
    for key, name in (("rto_seconds", "Rto"), ("rpo_seconds", "Rpo")):
        if objectives.get(key) is not None:
            rules.append(_alert(f"AepOpsDrill{name}OverObjective",
                                f"max by (env) (aep_ops_dr_{key}{{env={e}}}) > {int(objectives[key])}", "warning",
                                f"The last DR drill on {{{{ $labels.env }}}} measured an {name.upper()} over the"
                                f" objective of {duration(int(objectives[key]))}", "dr.drill"))
    if self_hosted:
        backup_age = int(limits["backup_max_age_hours"]) * HOUR
        rules += [
            _alert("AepOpsBackupStale", f"time() - max by (env) (aep_ops_backup_last_end_timestamp_seconds{{env={e}}})"
                   f" > {backup_age}", "critical", f"The newest backup on {{{{ $labels.env }}}} is older than"
                   f" {duration(backup_age)}", "backup.run"),
            _alert("AepOpsBackupNeverTaken", f"absent(aep_ops_backup_last_end_timestamp_seconds{{env={e}}})",
                   "critical", f"No backup has been taken on {{{{ $labels.env }}}} in the {duration(backup_age)}"
                   " these rules have been watching", "backup.run", wait=backup_age),
            _alert("AepOpsArchiveFailing", f"max by (env) (aep_ops_archive_failing{{env={e}}}) == 1", "critical",
                   "WAL archiving on {{ $labels.env }} is failing (see the last backup.check)", "backup.check"),
        ]
    cert_left = int(limits["cert_min_days"]) * DAY
    rules += [
        _alert("AepOpsCertExpiring", f"min by (env, certificate, endpoint, host)"
               f" (aep_ops_cert_expiry_seconds{{env={e}}}) < {cert_left}", "critical",
               f"The certificate {{{{ $labels.certificate }}}} served at {{{{ $labels.endpoint }}}} on"
               f" {{{{ $labels.env }}}} expires in less than {duration(cert_left)}", "certs.renew"),
        _alert("AepOpsAcmCertExpiring", f"min by (env, certificate, arn) (aep_ops_acm_cert_expiry_seconds{{env={e}}})"
               f" < {cert_left}", "critical", f"The ACM certificate {{{{ $labels.certificate }}}} on"
               f" {{{{ $labels.env }}}} expires in less than {duration(cert_left)}", "certs.renew"),
    ]
    rules.append(_alert("AepOpsNotificationsFailing", f"increase(aep_ops_notifications{{env={e},result=\"failed\"}}[1h])"
                        " > 0", "warning", "Notifications to {{ $labels.channel }} on {{ $labels.env }} failed in the"
                        " last hour: pages may not be reaching anyone (see the aep-ops log)", "incident.notify"))
    for runbook_id, (seconds, names) in overdue_after(jobs).items():
        selector = f"aep_ops_runbook_last_success_timestamp_seconds{{runbook={_q(runbook_id)},env={e}}}"
        jobs_text = ", ".join(names)
        rules += [
            _alert("AepOpsRunbookOverdue", f"time() - max by (runbook, env) ({selector}) > {seconds}", "warning",
                   f"{{{{ $labels.runbook }}}} on {{{{ $labels.env }}}} has not succeeded for more than"
                   f" {duration(seconds)}: its schedule ({jobs_text}) stopped or its runs fail", runbook_id),
            _alert("AepOpsRunbookNeverSucceeded", f"absent({selector})", "warning",
                   f"{{{{ $labels.runbook }}}} on {{{{ $labels.env }}}} has not succeeded once in the"
                   f" {duration(seconds)} these rules have been watching (jobs: {jobs_text})", runbook_id,
                   wait=seconds),
        ]
    return {"groups": [{"name": f"aep-ops-{env}", "rules": rules}]}


def render(rules: dict[str, Any], command: str = "inv metrics.rules") -> str:
    import yaml

    head = f"# Generated by `{command}`: edit the configuration and generate again, not this file.\n"
    return head + yaml.safe_dump(rules, sort_keys=False, width=1000, allow_unicode=True)


def for_settings(settings: Any) -> dict[str, Any]:
    """The rules of ``settings.env_name``: its enabled scheduled jobs, objectives and thresholds."""
    from aep_ops.db.backends import backend_class
    from aep_ops.timers.jobs import scheduled_jobs

    return build(settings.env_name, jobs=scheduled_jobs(settings), objectives=settings.env.get("objectives") or {},
                 thresholds=settings.env.get("metrics") or {}, self_hosted=bool(backend_class(settings).self_hosted))


def _alert(name: str, expr: str, severity: str, summary: str, runbook_id: str, wait: int = 0) -> dict[str, Any]:
    """One alerting rule; its ``runbook`` label tells two rules of one name apart (promtool's lint
    refuses duplicates) and routes the alert to the runbook's owner."""
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if wait:
        rule["for"] = duration(wait)
    rule["labels"] = {"severity": severity, "runbook": runbook_id}
    rule["annotations"] = {"summary": summary, "runbook_url": f"runbooks/{runbook_id}.md"}
    return rule


def _q(value: str) -> str:
    """A PromQL string literal (JSON's escapes are PromQL's)."""
    return json.dumps(str(value))
