"""One interface over where the database runs, so pitr.* and dr.drill steps are written once.

``local``: the self-hosted source under the state dir, pgBackRest, restored clusters on this
machine (aep_ops.db.backends.local_restore). ``rds``: Amazon RDS automated backups and
restore-to-point-in-time into a new, tagged instance (aep_ops.db.backends.rds). A restore is
identified by its name (the cluster directory, or the new DB instance identifier).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from aep_ops.db import locations
from aep_ops.errors import VerificationFailed


def backend_for(settings: Any) -> Any:
    if settings.env.get("backend") == "rds":
        from aep_ops.db.backends.rds import RdsBackend

        return RdsBackend(settings)
    return LocalBackend(settings)


class LocalBackend:
    kind = "local"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.db = locations.local_db(settings)

    def archive_facts(self) -> dict[str, Any]:
        from aep_ops.db.backends import local_restore

        facts = local_restore.archive_facts(self.db)
        problems = []
        if facts["failing"]:
            problems.append(f"WAL archiving is failing on the source (last failed {facts['last_failed_wal']}"
                            f" at {facts['last_failed_at']}); fix it (`inv backup.check`) before restoring")
        return {**facts, "problems": problems}

    def check_target(self, target: datetime) -> dict[str, Any]:
        from aep_ops.db.backends import local_restore

        found = local_restore.check_target(self.db, target)
        return {"backup_label": found.backup_label, "backup_stop": found.backup_stop.isoformat(),
                "archive_lag_seconds": found.archive_lag_seconds}

    def restore_state(self, name: str, target: datetime) -> tuple[str, dict[str, Any] | None]:
        from aep_ops.db.backends import local_restore

        state, copy = local_restore.restore_state(self.settings, name, target)
        return state, (dict(copy.meta) if copy else None)

    def restore(self, name: str, target: datetime, *, run_id: str | None, purpose: str, progress: Any,
                timeout: float) -> dict[str, Any]:
        from aep_ops.db.backends import local_restore

        found = local_restore.check_target(self.db, target)  # facts go stale: check again right before
        meta = local_restore.restore(self.settings, self.db, name, found, run_id=run_id, purpose=purpose,
                                     progress=progress, timeout=timeout)
        return {**meta, "backup_stop": found.backup_stop.isoformat()}

    def verify(self, meta: dict[str, Any], smoke_queries: list[str]) -> dict[str, Any]:
        from aep_ops.db.backends import local_restore

        return local_restore.verify(self.settings, meta, self.db.dbname, smoke_queries)

    @contextmanager
    def connect_restored(self, name: str) -> Iterator[Any]:
        copy = locations.restored_copy(self.settings, name)
        if copy is None:
            raise VerificationFailed(f"the restored copy {name} is gone; run again")
        with copy.cluster(self.settings).connect(self.db.dbname) as conn:
            conn.autocommit = True
            yield conn

    @contextmanager
    def connect_source(self) -> Iterator[Any]:
        with self.db.cluster.connect(self.db.dbname) as conn:
            conn.autocommit = True
            yield conn

    def free_bytes(self) -> int | None:
        root = locations.restores_dir(self.settings)
        root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(root).free

    def wait_until_restorable(self, target: datetime, progress: Any) -> None:
        """Local: the drill switches WAL and waits for the segment; nothing more to wait for."""

    def discard(self, name: str) -> bool:
        from aep_ops.db.backends import local_restore

        return local_restore.discard(self.settings, name)

    def copies(self) -> list[dict[str, Any]]:
        return [c.meta for c in locations.restored_copies(self.settings)]

    def exists(self, name: str) -> bool:
        return locations.restored_copy(self.settings, name) is not None or (locations.restores_dir(self.settings)
                                                                         / name).exists()
