"""Progress of pgBackRest restores and backups (``aep_ops.pg.progress`` does the showing).

Restore: the target data directory's growth against the backup's database size, from
``pgbackrest info --output=json`` (``info.size``: the size of the data directory the backup
restores, for a diff or incr backup too). Backup: the growth of the stanza's directory in repo1
against the repository size of the previous backup of the same type in the same repo
(compressed bytes, like what is being written), a guess that holds while the database changes
slowly; with no such backup the total is unknown and only bytes, rate and elapsed time show
(the database size would overstate compressed bytes). A backup to repo2 (S3) shows elapsed
time only: listing the bucket to measure it would cost more than it tells.

Looking up the size is one ``info`` call, made by the watching thread (the work does not wait
for it); if it fails, the work goes on without a total.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aep_ops.pg.progress import Watch, dir_size, stream_of


def restore_watch(backrest: Any, label: str, datadir: str | os.PathLike[str], progress: Any) -> Watch:
    """``with restore_watch(db.backrest, label, copy.datadir, ctx.progress): backrest.restore(...)``."""
    def total() -> int | None:
        return _lookup(lambda: next((b.database_size for b in backrest.info() if b.label == label), None))

    return Watch("restoring", lambda: dir_size(datadir), total, verb_done="restored", out=stream_of(progress),
                 phase="restore", backup_label=label)


def backup_watch(backrest: Any, type: str, repo: int, progress: Any) -> Watch:
    """``with backup_watch(db.backrest, "full", 1, ctx.progress): backrest.backup(...)``."""
    out = stream_of(progress)
    if repo != 1:
        return Watch(f"backing up to repo{repo}", lambda: None, None, verb_done="backed up", out=out, phase="backup")
    root = Path(backrest.config.repo1_path) / "backup" / backrest.config.stanza
    before = dir_size(root) or 0

    def total() -> int | None:
        return _lookup(lambda: next((b.repo_size for b in reversed(backrest.info())
                                     if b.type == type and (b.repo_key or 1) == repo and not b.error), None))

    def written() -> int | None:
        now = dir_size(root)
        return None if now is None else max(0, now - before)

    return Watch("backing up", written, total, verb_done="backed up", out=out, phase="backup", backup_type=type)


def _lookup(func: Any) -> int | None:
    try:
        value = func()
        return int(value) if value else None
    except Exception:  # noqa: BLE001 - progress never fails the work: no total, then
        return None
