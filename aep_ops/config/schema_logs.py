"""The configuration of log rotation, shipping and retention (``logs:`` of an environment).

Kept apart from schema.py so each stays small; the kinds, names and defaults the code reads are
in ``aep_ops.logs.settings``."""

from __future__ import annotations

from aep_ops.config.schema import DAY, Field, ListOf, Section

KINDS = ("node-api", "nginx", "postgresql", "aep-ops", "audit", "plain")
SCHEDULES = ("hourly", "daily", "weekly")

SOURCE = Section({
    "name": Field(str, "a unique name: letters, digits, '-' and '_'", required=True, nullable=False),
    "kind": Field(KINDS, "node-api (create + USR2), nginx (create + USR1), postgresql (copytruncate), aep-ops and"
                         " audit (this machine's own log and audit log), plain (create)", required=True,
                  nullable=False),
    "role": Field(str, "host role whose hosts hold the files; `local` is the machine aep-ops runs on"),
    "paths": ListOf(Field("remote_path"), "log files or globs ({host} is the host's name)"),
    "class": Field(("app", "audit"), "audit: kept audit_retention_days, under object lock where configured"),
    "schedule": Field(SCHEDULES, "rotate this often (default daily; by size alone when only size is set)"),
    "size": Field(str, "rotate when bigger than this (e.g. 100M): alone, or as maxsize with the schedule"),
    "keep": Field(int, "unshipped rotated files kept on the host (shipped ones go to shipped/; default 168)",
                  minimum=1, maximum=100000),
    "compress": Field(bool, "gzip rotated files (default true)"),
    "method": Field(("create", "copytruncate"), "copytruncate loses the lines written between its copy and its"
                                                " truncate: only where the process cannot reopen its file"),
    "signal": Field(str, "signal that makes the process reopen its log (node-api: USR2, nginx: USR1)"),
    "pidfile": Field("remote_path", "file holding the pid of the process to signal"),
    "reopen_command": ListOf(Field(str), "argv that makes the process reopen its file, instead of a signal"),
    "create_mode": Field(str, "mode of the new log logrotate creates (default 0640)"),
    "su": Field(str, "`USER GROUP` logrotate rotates as (needed when the directory is group/world-writable)"),
})

OBJECT_LOCK = Section({
    "mode": Field(("GOVERNANCE", "COMPLIANCE"), "object lock mode of shipped audit logs (default GOVERNANCE)"),
    "days": Field(int, "days each audit object stays locked (default: audit_retention_days)", minimum=1,
                  maximum=36500),
})

LOGS = Section({
    "bucket": Field(str, "S3 bucket the rotated files are shipped to"),
    "prefix": Field(str, "key prefix in the bucket, before {env}/ (default none)"),
    "sse": Field(("AES256", "aws:kms"), "server-side encryption of shipped objects (default AES256)"),
    "kms_key_id": Field(str, "KMS key for sse: aws:kms"),
    "retention_days": Field(int, "days shipped logs are kept in S3 (default 90 in production, else 30)",
                            minimum=1, maximum=36500),
    "audit_retention_days": Field(int, "days shipped audit logs are kept (default 365)", minimum=1, maximum=36500),
    "noncurrent_days": Field(int, "days a noncurrent version is kept on a versioned bucket (default 7)",
                             minimum=1, maximum=36500),
    "audit_object_lock": OBJECT_LOCK,
    "local_retention_days": Field(int, "days a shipped file stays in shipped/ on its host (default 7)",
                                  minimum=0, maximum=3650),
    "concurrency": Field(int, "parallel S3 requests of logs.ship (default 4)", minimum=1, maximum=64),
    "multipart_threshold_mb": Field(int, "files from this size go up in parts (default 64)", minimum=5,
                                    maximum=5120),
    "part_size_mb": Field(int, "part size of a multipart upload (default 16)", minimum=5, maximum=5120),
    "config_path": Field("remote_path", "where logs.rotate installs the logrotate file on each host"
                                        " (default /etc/aep-ops/logrotate-ENV.conf; {host} allowed)"),
    "state_file": Field("remote_path", "logrotate's own state file on each host"
                                       " (default /var/lib/aep-ops/logrotate-ENV.status; {host} allowed)"),
    "reopen_timeout": Field(int, "seconds a process has to reopen its file after the signal (default 10)",
                            minimum=1, maximum=DAY),
    "sources": ListOf(SOURCE, "the log files of each role (default: this machine's aep-ops log and audit log)"),
})

ENVIRONMENT_FIELDS = {"logs": LOGS}
