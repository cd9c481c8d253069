"""doctor's probes for backend ``local``: the source cluster, its WAL archiving, its pgBackRest backups.

Read-only: the cluster is looked at (its files, its postmaster, pg_stat_archiver), never
created or started; ``pgbackrest info`` is asked only when the stanza's config file exists
(``db.setup`` writes it), so a machine where nothing was set up gets one clear fix.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aep_ops.doctor.environment import DAILY
from aep_ops.doctor.rows import age_text, row
from aep_ops.engine.context import RunContext
from aep_ops.base.errors import AepError
from aep_ops.base.textfmt import duration

USES_AWS = False


def source_rows(ctx: RunContext) -> list[dict]:
    from aep_ops.db.backends import backend_for

    db = _db(ctx)
    cluster, setup = db.cluster, _setup(ctx)
    if not cluster.exists():
        return [row("source", False, f"no source cluster at {cluster.datadir}",
                    f"{setup} creates it and takes its first backup (the first `inv dr.drill` does too)")]
    if cluster.postmaster_pid() is None:
        return [row("source", False, f"the cluster at {cluster.datadir} (port {cluster.port}) is not running",
                    f"{setup} starts it; if it does not stay up, read {cluster.logfile}")]
    try:
        facts = backend_for(ctx.settings).archive_facts()
    except AepError as exc:
        return [row("source", False, f"running but not answering on port {cluster.port}: {exc}",
                    f"read {cluster.logfile}; restart it with {setup}")]
    rows = [row("source", True, f"running at {cluster.datadir} (port {cluster.port})")]
    rpo = int((ctx.env.get("objectives") or {}).get("rpo_seconds") or 900)
    lag, last = facts["archive_lag_seconds"], facts["last_archived_at"]
    check = f"`inv backup.check --env {ctx.env_name}`"
    if facts["failing"]:
        rows.append(row("archiving", False, f"failing: {facts['last_failed_wal']} failed at {facts['last_failed_at']}",
                        f"{check} says why; fix the repository or archive_command (see {cluster.logfile})"))
    elif last is None:
        rows.append(row("archiving", False, "no WAL segment archived yet",
                        f"`inv backup.setup --env {ctx.env_name}` proves archiving end to end"))
    elif lag is not None and lag > rpo:
        rows.append(row("archiving", False, f"the archive lags {duration(lag)} (RPO {duration(rpo)})",
                        f"{check} shows the backlog; check archive_command and the repository"))
    else:
        rows.append(row("archiving", True, f"last WAL archived {facts['last_archived_wal']},"
                        f" lag {duration(lag or 0)} (RPO {duration(rpo)})"))
    return rows


def backup_rows(ctx: RunContext, *, now: datetime | None = None) -> list[dict]:
    db = _db(ctx)
    run = f"inv backup.run --env {ctx.env_name}"
    if not db.cluster.exists() or not Path(db.backrest.config.config_path).exists():
        return [row("backups", False, "no backup: the source and its pgBackRest stanza were never set up",
                    f"{_setup(ctx)} sets them up and takes the first full backup")]
    backups = [b for b in db.backrest.info() if not b.error]
    now = now or datetime.now(timezone.utc)
    repos = [1, 2] if db.backrest.config.repo2 is not None else [1]
    rows = []
    for repo in repos:
        mine = [b for b in backups if (b.repo_key or 1) == repo]
        item = f"backups in repo{repo}"
        if not mine:
            rows.append(row(item, False, f"no backup in {db.backrest.describe_repo(repo)}",
                            f"`{run} --repo {repo} --type full`, then make sure the backup timer runs daily"))
            continue
        newest = mine[-1]
        age = (now - newest.stop).total_seconds()
        if age > DAILY.total_seconds():
            rows.append(row(item, False, f"newest backup {newest.label} ({newest.type}) ended {age_text(age)} ago;"
                            " backups must be daily",
                            f"`{run} --repo {repo} --type diff` now, then check why the daily backup did not run"))
        else:
            rows.append(row(item, True, f"newest backup {newest.label} ({newest.type}) ended {age_text(age)} ago"))
    return rows


def _db(ctx: RunContext) -> Any:
    from aep_ops.db import locations

    return locations.local_db(ctx.settings)


def _setup(ctx: RunContext) -> str:
    return f"`inv db.setup --env {ctx.env_name}`"
