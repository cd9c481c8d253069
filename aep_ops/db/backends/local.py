"""Backend ``local``: the self-hosted source under the state dir, restored into NEW clusters here.

The source is one PostgreSQL 15 cluster under STATE_DIR/pg/aep-source (``aep_ops.db.locations``)
archiving through pgBackRest. Guards (FIELD-NOTES): the target is validated against the archive
and the backups before anything is touched (``local_facts``); the copy never writes into the
source's archive; promotion is confirmed (not in recovery, postmaster alive, "recovery stopping
before ..." logged) and "recovery ended before configured recovery target was reached" is an
error. A restore killed half-way is detected by its marker (status "restoring") and redone from
scratch on the same port, after stopping any server it left running and any pgBackRest restore
still writing into it: no orphaned cluster, process or port. Cutover (both ways: to a copy,
and back) is in ``local_cutover``: archiving on for the new primary in its own stanza, the
pointer file STATE_DIR/pg/active.json, an immediate full backup, a WAL round trip.
"""

from __future__ import annotations

import functools
import os
import shutil
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from aep_ops.base import netports
from aep_ops.db import locations
from aep_ops.db.backends import DatabaseBackend, local_cutover, local_facts, name_taken
from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed
from aep_ops.base.log import get_logger
from aep_ops.base.timefmt import iso_from_timestamp

log = get_logger(__name__)


class Backend(DatabaseBackend):
    self_hosted = True

    @functools.cached_property
    def db(self) -> locations.LocalDb:
        """The active source (``locations.local_db``), resolved when first used: a cut back must
        work even when the active copy has gone."""
        return locations.local_db(self.settings)

    @classmethod
    def check_usable(cls, settings: Any) -> None:
        require_reachable_state_dir(settings)

    # --- the source ---

    def connection_params(self) -> dict[str, Any]:
        c = self.db.cluster
        return {"host": str(c.socket_dir), "port": c.port, "dbname": self.db.dbname, "user": c.os_user}

    @contextmanager
    def connect_source(self) -> Iterator[Any]:
        with self.db.cluster.connect(self.db.dbname) as conn:
            conn.autocommit = True
            yield conn

    def source_running(self) -> bool:
        return self.db.cluster.postmaster_pid() is not None

    def archive_facts(self) -> dict[str, Any]:
        facts = local_facts.archive_facts(self.db)
        problems = []
        if facts["failing"]:
            problems.append(f"WAL archiving is failing on the source (last failed {facts['last_failed_wal']}"
                            f" at {facts['last_failed_at']}); fix it (`inv backup.check`) before restoring")
        return {**facts, "problems": problems}

    def before_target_writes(self) -> None:
        """pgBackRest records backup stop times in whole seconds, and a target must lie after the
        backup's end (else PostgreSQL 15 silently stops at that end): right after a fresh backup,
        wait out that second rather than have the restore refuse the target."""
        from aep_ops.pg.target import STOP_RESOLUTION

        stops = [b.stop for b in self.db.backrest.info() if not b.error]
        if stops:
            delay = (max(stops) + STOP_RESOLUTION * 1.2 - datetime.now(timezone.utc)).total_seconds()
            if delay > 0:
                time.sleep(delay)

    def archive_now(self, conn: Any, progress: Any) -> str | None:
        from aep_ops.pg import facts

        walfile = facts.switch_wal(conn)
        progress(f"waiting for WAL segment {walfile} to reach the archive")
        facts.wait_archived(conn, walfile, timeout=120, poll=0.02)
        return walfile

    def wait_until_restorable(self, target: datetime, progress: Any) -> None:
        """Nothing more to wait for: ``archive_now`` waited for the segment."""

    # --- restored copies ---

    def check_target(self, target: datetime) -> dict[str, Any]:
        found = local_facts.check_target(self.db, target)
        return {"backup_label": found.backup_label, "backup_stop": found.backup_stop.isoformat(),
                "archive_lag_seconds": found.archive_lag_seconds}

    def restore_state(self, name: str, target: datetime) -> tuple[str, dict[str, Any] | None]:
        state, copy = restore_state(self.settings, name, target)
        return state, (dict(copy.meta) if copy else None)

    def restore(self, name: str, target: datetime, *, run_id: str | None, purpose: str, progress: Any,
                timeout: float, fast_replay: bool = False) -> dict[str, Any]:
        found = local_facts.check_target(self.db, target)  # facts go stale: check again right before
        meta = restore(self.settings, self.db, name, found, run_id=run_id, purpose=purpose,
                       progress=progress, timeout=timeout, fast_replay=fast_replay)
        return {**meta, "backup_stop": found.backup_stop.isoformat()}

    def verify(self, meta: dict[str, Any], target: datetime, smoke_queries: list[str]) -> dict[str, Any]:
        """See ``aep_ops.db.verify``; a local copy must also be on a new timeline."""
        from aep_ops.db.verify import verify_copy

        with self.connect_restored(meta["name"]) as conn:
            return verify_copy(conn, target, smoke_queries, min_timeline=2)

    @contextmanager
    def connect_restored(self, name: str) -> Iterator[Any]:
        copy = locations.restored_copy(self.settings, name)
        if copy is None:
            raise VerificationFailed(f"the restored copy {name} is gone; run again")
        cluster = copy.cluster(self.settings)
        if copy.meta.get("stopped_by_interrupt") and cluster.postmaster_pid() is None:
            cluster.start()  # an interrupted drill stopped it; its resume needs it back
            copy.meta.pop("stopped_by_interrupt")
            copy.save()
        with cluster.connect(self.db.dbname) as conn:
            conn.autocommit = True
            yield conn

    def free_bytes(self) -> int | None:
        root = locations.restores_dir(self.settings)
        root.mkdir(parents=True, exist_ok=True)
        return shutil.disk_usage(root).free

    def discard(self, name: str) -> bool:
        return discard(self.settings, name)

    def stop_restored(self, name: str) -> bool:
        copy = locations.restored_copy(self.settings, name)
        if copy is None:
            return False
        stopped = stop_copy(copy.cluster(self.settings))
        if stopped:
            copy.meta["stopped_by_interrupt"] = True
            copy.save()
        return stopped

    def abandon_restore(self, name: str) -> bool:
        return discard(self.settings, name)

    def copies(self) -> list[dict[str, Any]]:
        return [c.meta for c in locations.restored_copies(self.settings)]

    def exists(self, name: str) -> bool:
        return (locations.restored_copy(self.settings, name) is not None
                or (locations.restores_dir(self.settings) / name).exists())

    # --- cutover (local_cutover) ---

    def source_name(self) -> str:
        return locations.SOURCE_NAME

    def active_name(self) -> str:
        return locations.active_name(self.settings)

    def previous_name(self) -> str | None:
        return local_cutover.previous_name(self.settings)

    def plan_protect(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        return local_cutover.plan_protect(self.settings, name)

    def apply_protect(self, name: str, details: dict[str, Any], progress: Any) -> dict[str, Any]:
        return local_cutover.apply_protect(self.settings, name, progress)

    def verify_protect(self, name: str) -> None:
        local_cutover.verify_protect(self.settings, name)

    def plan_cutover(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        return local_cutover.plan_pointer(self.settings, name)

    def apply_cutover(self, name: str, details: dict[str, Any], run_id: str | None) -> dict[str, Any]:
        return local_cutover.apply_pointer(self.settings, name, details, run_id)

    def plan_first_backup(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        return local_cutover.plan_backup(self.settings, name)

    def apply_first_backup(self, name: str, details: dict[str, Any], progress: Any) -> dict[str, Any]:
        return local_cutover.apply_backup(self.settings, name, progress)

    def verify_first_backup(self, name: str, outputs: dict[str, Any]) -> None:
        local_cutover.verify_backup(self.settings, name, outputs)

    def check_archiving(self, name: str) -> dict[str, Any]:
        return local_cutover.check_archiving(self.settings, name)


def require_reachable_state_dir(settings: Any) -> None:
    """The postgres user must traverse STATE_DIR to reach the cluster and the repo; say so early
    (``Backend.check_usable``, and the steps that create the source)."""
    from aep_ops.pg import fsutil

    user = (settings.env.get("postgres") or {}).get("os_user") or "postgres"
    try:
        fsutil.check_traversable(locations.pg_root(settings) / "aep-source", user)
    except KeyError:
        raise UsageError(f"OS user {user!r} does not exist; install PostgreSQL 15 (make drill) or set"
                         f" environments.{settings.env_name}.postgres.os_user") from None
    except UsageError as exc:
        raise UsageError(f"state_dir {settings.state_dir} is not reachable by the {user} user ({exc}); "
                         "set state_dir (or AEP_OPS_STATE_DIR) to a directory it can traverse, "
                         "e.g. /var/lib/aep-ops") from None


def restore_state(settings: Any, name: str, target: datetime) -> tuple[str, locations.RestoredCopy | None]:
    """'absent', 'partial' (a killed restore), 'done' (promoted at this target) or 'other' (name taken)."""
    copy = locations.restored_copy(settings, name)
    if copy is None:
        base = locations.restores_dir(settings) / name
        return ("other", None) if base.exists() else ("absent", None)
    if copy.meta.get("target_time") != target.isoformat():
        return "other", copy
    return ("done", copy) if copy.meta.get("status") == "promoted" else ("partial", copy)


def restore(settings: Any, db: locations.LocalDb, name: str, check: local_facts.TargetCheck, *, run_id: str | None,
            purpose: str, progress: Any = None, timeout: float = 1800, fast_replay: bool = False) -> dict[str, Any]:
    """Restore ``check.backup_label`` + WAL up to ``check.target`` into restores/NAME and promote it,
    with one pgBackRest process per core (``backup.restore_process_max``); ``fast_replay``: see
    ``backends.FAST_REPLAY``."""
    from aep_ops.base.cores import configured_or_cores
    from aep_ops.db.backends import FAST_REPLAY

    say = progress or (lambda message: None)
    state, copy = restore_state(settings, name, check.target)
    if state == "other":
        raise name_taken(name)
    if state == "done":
        return dict(copy.meta)
    started = time.time()
    if copy is None:
        copy = locations.RestoredCopy(name=name, base=locations.restores_dir(settings) / name, meta={})
    port = copy.meta.get("port") or netports.server_port(_ports_in_use(settings, db))
    copy.meta.update({"name": name, "created_by": "aep-ops", "purpose": purpose, "run_id": run_id,
                      "status": "restoring", "port": port, "target_time": check.target.isoformat(),
                      "backup_label": check.backup_label, "source": str(db.cluster.datadir),
                      "restore_started_at": iso_from_timestamp(started),
                      "fast_replay": dict(FAST_REPLAY) if fast_replay else None})
    _ensure_base(copy)
    copy.save()
    cluster = copy.cluster(settings)
    _clear_partial(cluster)
    say(f"restoring backup {check.backup_label} into {copy.datadir}")
    from aep_ops.pg.backrest_progress import restore_watch

    processes = configured_or_cores((settings.env.get("backup") or {}).get("restore_process_max"))
    with restore_watch(db.backrest, check.backup_label, copy.datadir, progress):  # bytes, rate, ETA
        result = db.backrest.restore(copy.datadir, target_time=check.target, set_label=check.backup_label,
                                     timeout=timeout, extra_options=[f"--process-max={processes}"])
    restored_at = time.time()
    cluster.configure({"archive_mode": "off", "archive_command": "", "shared_buffers": "128MB",
                       **(FAST_REPLAY if fast_replay else {})})
    cluster.disable_archiving()
    left = max(30.0, started + timeout - time.time())  # one deadline for files + replay, not one each
    port = _start_copy(settings, db, copy, cluster, left, say, check.target.isoformat())
    promoted = cluster.wait_for_promotion(timeout=left, poll=0.02)  # RTO is measured: poll finely
    if promoted.archive_mode != "off":
        raise VerificationFailed(f"restored copy {name} has archive_mode={promoted.archive_mode}; it must be off")
    finished = time.time()
    copy.meta.update({
        "status": "promoted", "dsn": cluster.dsn(db.dbname), "timeline": promoted.timeline,
        "last_replayed_commit": promoted.last_replayed_commit.isoformat() if promoted.last_replayed_commit else None,
        "recovery_stop": promoted.stop_line, "restore_seconds": round(restored_at - started, 3),
        "recovery_seconds": round(finished - restored_at, 3), "promoted_at": iso_from_timestamp(finished),
        "pgbackrest_seconds": round(result.duration, 3), "restore_process_max": processes,
    })
    copy.save()
    log.info("pitr.restored", name=name, port=port, timeline=promoted.timeline)
    return dict(copy.meta)


def discard(settings: Any, name: str) -> bool:
    """Stop and remove a copy aep-ops created; refuse anything else. False if already gone."""
    copy = locations.restored_copy(settings, name)
    base = locations.restores_dir(settings) / name
    if copy is None:
        if base.exists():
            raise UsageError(f"{base} was not created by aep-ops (no {locations.RESTORE_MARKER}); refusing to remove it")
        return False
    if locations.active_name(settings) == name:
        raise UsageError(f"{name} is the database the application uses (cut over to it); cut over to another"
                         f" first (`inv pitr.cutover {locations.SOURCE_NAME}`), then discard it")
    stop_copy(copy.cluster(settings))  # its files are deleted next: stopped at once, no checkpoint
    _remove_soon(base)
    return True


def stop_copy(cluster: Any) -> bool:
    """Stop a pgBackRest restore still writing into the copy (a killed run's) and its server
    (immediate: no checkpoint). True when something was running."""
    from aep_ops.pg import orphans

    writers = orphans.stop_writers(cluster.datadir)
    if cluster.postmaster_pid() is None:  # not running, or started an instant ago: no pid file yet
        return bool(orphans.stop_postmasters(cluster.datadir) or writers)
    cluster.stop(mode="immediate")
    return True


def _remove_soon(base: Any) -> None:
    """Rename the copy out of sight at once (the name is free again), delete the files in a
    detached process: removing gigabytes should not hold up the run or its RTO report."""
    import subprocess
    import uuid

    trash = base.parent / f".removing-{base.name}-{uuid.uuid4().hex[:6]}"
    os.rename(base, trash)
    subprocess.Popen(["rm", "-rf", "--", str(trash)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def _ensure_base(copy: locations.RestoredCopy) -> None:
    from aep_ops.pg import fsutil

    fsutil.ensure_dir(copy.base.parent, owner=None, mode=0o755)
    fsutil.ensure_dir(copy.base, owner=None, mode=0o755)


def _clear_partial(cluster: Any) -> None:
    """A killed restore may have left a server running, a pgBackRest restore still writing, or
    files behind: stop them, empty the dir."""
    stop_copy(cluster)
    if cluster.datadir.exists():
        shutil.rmtree(cluster.datadir)


def _ports_in_use(settings: Any, db: locations.LocalDb) -> set[int]:
    """The source's port and every other copy's (stopped copies keep theirs: pitr.start reuses it)."""
    recorded = {c.meta.get("port") for c in locations.restored_copies(settings)}
    return {db.cluster.port, *(p for p in recorded if isinstance(p, int))}


def _start_copy(settings: Any, db: locations.LocalDb, copy: locations.RestoredCopy, cluster: Any, timeout: float,
                say: Any, target: str, attempts: int = 3) -> int:
    """Start the copy's server (not waiting for recovery: wait_for_promotion does) and return its port.
    The port was chosen before the restore, which can take an hour: if something took it since,
    the copy moves to another one (recorded in restore.json) instead of failing the restore."""
    attempt = 1
    while True:
        if attempt > 1 or not netports.free_on_loopback(cluster.port):
            taken = cluster.port
            cluster.port = netports.server_port(_ports_in_use(settings, db) | {taken})
            cluster.configure(cluster.current_settings())  # the managed port is the new one
            copy.meta["port"] = cluster.port
            copy.save()
            log.warning("pitr.copy_port_moved", name=copy.name, taken=taken, port=cluster.port)
            say(f"port {taken} is taken; the copy moves to port {cluster.port}")
        say(f"starting the copy on port {cluster.port} and replaying WAL to {target}")
        try:
            cluster.start(timeout=timeout, wait=False)  # pg_ctl -w would poll at 100 ms: RTO is measured
            return cluster.port
        except StepFailed as exc:
            if not netports.port_taken(str(exc)) or attempt == attempts:
                raise
        attempt += 1

