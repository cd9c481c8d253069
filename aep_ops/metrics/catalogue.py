"""Every metric family aep-ops writes: name, type, HELP and label names, in this one place.

node_exporter's textfile collector merges a family found in several files (one per runbook and
environment) only when every file gives it the same HELP and TYPE; one differing text drops the
family from the scrape with an error (node_exporter#1885). So no writer spells a HELP itself:
the run metrics, the domain metrics and the dr/certs writers all take theirs from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...]
    type: str = "gauge"

    def header(self) -> str:
        """``# HELP`` and ``# TYPE`` lines, for the writers that render their own text."""
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} {self.type}"


RUN = ("runbook", "env")
ENV = ("env",)
BACKUP = ("env", "repo", "type")
RESULTS = ("succeeded", "failed", "verification_failed", "interrupted", "refused")

_ALL = (
    # Every real run of every runbook, from any front door: aep_ops_run_RUNBOOK@ENV.prom (runs.py).
    Family("aep_ops_runbook_last_run_timestamp_seconds", "When the last run of the runbook on the environment"
           " ended, whatever its result.", RUN),
    Family("aep_ops_runbook_last_success_timestamp_seconds", "When the last successful run of the runbook on the"
           " environment ended (kept across failed runs; absent until one succeeds).", RUN),
    Family("aep_ops_runbook_last_duration_seconds", "How long the last run of the runbook took, start to end.", RUN),
    Family("aep_ops_runbook_last_result", "1 for the result of the last run (succeeded, failed,"
           " verification_failed, interrupted, refused), 0 for the others.", (*RUN, "result")),
    # dr.drill: aep_ops_dr_ENV.prom (aep_ops/dr/report.py).
    Family("aep_ops_dr_last_run_timestamp_seconds", "When the last drill finished.", ENV),
    Family("aep_ops_dr_last_success_timestamp_seconds", "When the last passing drill finished.", ENV),
    Family("aep_ops_dr_result", "1 if the last drill passed every check, else 0.", ENV),
    Family("aep_ops_dr_rto_seconds", "Measured RTO of the last drill.", ENV),
    Family("aep_ops_dr_rpo_seconds", "Measured RPO of the last drill.", ENV),
    Family("aep_ops_dr_archive_lag_seconds", "Archive lag at the start of the last drill.", ENV),
    Family("aep_ops_dr_database_bytes", "Size of the source database the last drill restored.", ENV),
    Family("aep_ops_dr_restore_bytes_per_second", "Restore throughput of the last drill: the database size"
           " over the time pgBackRest or RDS took to restore the files.", ENV),
    # certs.check: aep_ops_certs_ENV.prom (aep_ops/certs/metrics.py).
    Family("aep_ops_cert_expiry_seconds", "Seconds until the served certificate expires (negative: expired).",
           ("env", "certificate", "endpoint", "host")),
    Family("aep_ops_cert_check_ok", "1 when the endpoint had no critical finding, else 0.",
           ("env", "certificate", "endpoint", "host")),
    Family("aep_ops_acm_cert_expiry_seconds", "Seconds until the ACM certificate expires.",
           ("env", "certificate", "arn")),
    Family("aep_ops_certs_check_last_run_timestamp_seconds", "When certs.check last finished.", ENV),
    # backup.run: aep_ops_backup_ENV.prom (aep_ops/backup/run_hooks.py), one series per repository and backup type.
    Family("aep_ops_backup_last_end_timestamp_seconds", "When the newest backup of this type in this repository"
           " ended (its age is time() minus this).", BACKUP),
    Family("aep_ops_backup_database_bytes", "Size of the database in the newest backup of this type.", BACKUP),
    Family("aep_ops_backup_repo_bytes", "Size of the newest backup of this type in the repository (compressed;"
           " only the changes for diff and incr).", BACKUP),
    Family("aep_ops_backup_duration_seconds", "How long the newest backup of this type took.", BACKUP),
    # backup.check: aep_ops_archive_ENV.prom (aep_ops/backup/run_hooks.py).
    Family("aep_ops_archive_failing", "1 when the last backup.check found WAL archiving failing (an archiver"
           " error, a backlog beyond the RPO, a repository not answering), else 0.", ENV),
    Family("aep_ops_archive_lag_seconds", "Seconds from the last archived WAL segment to the last backup.check.",
           ENV),
    Family("aep_ops_archive_last_archived_timestamp_seconds", "When the last WAL segment was archived, as the"
           " last backup.check saw it.", ENV),
    Family("aep_ops_archive_ready_segments", "WAL segments waiting to be archived at the last backup.check.", ENV),
    # logs.ship: aep_ops_logs_ENV.prom (aep_ops/logs/run_hooks.py).
    Family("aep_ops_logs_shipped_files", "Rotated log files the last logs.ship shipped to S3.", ENV),
    Family("aep_ops_logs_shipped_bytes", "Bytes of rotated log files the last logs.ship shipped to S3.", ENV),
    Family("aep_ops_logs_failed_files", "Rotated log files the last logs.ship could not ship (they stay on"
           " their hosts).", ENV),
    Family("aep_ops_logs_pending_files", "Rotated log files left on the hosts after the last logs.ship: not"
           " shipped, or still waiting for their compression.", ENV),
)

# Notifications (aep_ops/incident/notify.py): aep_ops_notify_ENV.prom (aep_ops/metrics/notifications.py).
_NOTIFY = (
    Family("aep_ops_notifications", "Notifications sent to the channel (pagerduty, opsgenie, slack) on the"
           " environment, by result (sent, failed): a count kept across runs that only grows.",
           ("env", "channel", "result")),
    Family("aep_ops_notification_last_failure_timestamp_seconds", "When a notification to the channel on the"
           " environment last failed (absent until one fails).", ("env", "channel")),
)

FAMILIES: dict[str, Family] = {f.name: f for f in (*_ALL, *_NOTIFY)}


def family(name: str) -> Family:
    """The family ``name``; a KeyError names a metric that is not in the catalogue (add it here)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"{name} is not in aep_ops/metrics/catalogue.py: add it there first") from None
