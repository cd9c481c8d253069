"""The log runbooks.

- ``logs.rotate``: each host's logrotate file rendered from the environment's log sources,
  installed only when it changed and after ``logrotate -d`` accepted it, then logrotate run with
  its own state file (aep_ops.logs.steps_rotate).
- ``logs.ship``: every rotated file not yet shipped, to S3 exactly once, verified there by
  checksum before it is marked shipped on its host (aep_ops.logs.steps_ship).
- ``logs.retention``: the bucket's lifecycle rules merged by ID, object lock for audit logs,
  shipped files pruned from the hosts (aep_ops.logs.steps_retention).

``logs.fetch`` only reads: it is a plain task (aep_ops.tasks.logs). Heavy imports stay inside
functions: the CLI imports this module to list tasks.
"""

from __future__ import annotations

import re

from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.logs.steps_retention import AuditObjectLock, BucketLifecycle, ShippedFilesOnHosts
from aep_ops.logs.steps_rotate import LogrotateFiles, RunLogrotate
from aep_ops.logs.steps_ship import AbandonedUploads, ShipFiles

BANDWIDTH = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:i?B)?(?:/s)?")
UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}


def _chosen_sources(ctx: RunContext, role: str | None) -> None:
    from aep_ops.fleet.inventory import role_flag
    from aep_ops.logs.settings import logs_settings, sources

    logs_settings(ctx.settings)
    ctx.params["sources"] = sources(ctx.settings, role_flag(role))


@runbook("logs.rotate", steps=[LogrotateFiles, RunLogrotate],
         summary="Rotate the logs of every host with logrotate: its file rendered from the configuration,"
                 " validated, installed when changed, run with its own state file",
         help={"role": "only the log sources of this role (`local`: this machine's aep-ops logs)",
               "force": "rotate every file now, due or not (logrotate -f)"})
def rotate(ctx: RunContext, *, role: str | None = None, force: bool = False) -> None:
    """Sources and their hosts are resolved before any host is touched: a mistake is exit 2."""
    _chosen_sources(ctx, role)
    ctx.params["force"] = bool(force)


@runbook("logs.ship", steps=[AbandonedUploads, ShipFiles],
         summary="Ship every rotated log file to S3 exactly once, verified there by checksum before it is"
                 " marked shipped on its host",
         help={"role": "only the log sources of this role", "paths": "only rotated files whose path matches this"
               " glob", "bucket": "ship to this bucket instead of logs.bucket",
               "max_bandwidth": "cap the upload rate, e.g. 20MB (bytes per second; K, M, G)"})
def ship(ctx: RunContext, *, role: str | None = None, paths: str | None = None, bucket: str | None = None,
         max_bandwidth: str | None = None) -> None:
    from datetime import datetime, timezone

    from aep_ops.base.errors import refuse_blank
    from aep_ops.logs.settings import bucket as bucket_of

    refuse_blank("--paths", paths, "give a glob of rotated files, or leave the flag out to ship every one")
    _chosen_sources(ctx, role)
    ctx.params["bucket"] = bucket_of(ctx.settings, bucket)
    ctx.params["paths"] = paths.strip() if paths else None
    ctx.params["max_bandwidth"] = bandwidth(max_bandwidth)
    ctx.params["started"] = datetime.now(timezone.utc)


@runbook("logs.retention", steps=[BucketLifecycle, AuditObjectLock, ShippedFilesOnHosts],
         summary="Keep shipped logs as long as required: lifecycle rules merged into the bucket (30 days dev,"
                 " 90 prod, audit longer), audit object lock, shipped files pruned from the hosts",
         help={"bucket": "this bucket instead of logs.bucket", "role": "only the hosts of this role's sources"})
def retention(ctx: RunContext, *, bucket: str | None = None, role: str | None = None) -> None:
    from aep_ops.logs.settings import bucket as bucket_of

    _chosen_sources(ctx, role)
    ctx.params["bucket"] = bucket_of(ctx.settings, bucket)


def bandwidth(value: str | None) -> int | None:
    """``--max-bandwidth`` in bytes per second (None: no cap); at least 64 KB/s."""
    from aep_ops.base.errors import UsageError, refuse_blank

    refuse_blank("--max-bandwidth", value, "give a rate such as 20MB, or leave the flag out for no cap")
    if value is None:
        return None
    match = BANDWIDTH.fullmatch(str(value).strip())
    rate = int(float(match[1]) * UNITS[match[2].lower()]) if match else 0
    if rate < 64 * 1024:
        raise UsageError(f"--max-bandwidth {value!r}: expected a rate of at least 64K bytes per second, e.g. 20MB")
    return rate
