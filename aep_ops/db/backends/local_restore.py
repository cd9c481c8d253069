"""Point-in-time restore of the local source into a NEW cluster, done the way that survives 3 a.m.

Guards (FIELD-NOTES): the target is validated against the archive and the backups before
anything is touched; the copy never writes into the source's archive; promotion is
confirmed (not in recovery, postmaster alive, "recovery stopping before ..." logged) and
"recovery ended before configured recovery target was reached" is an error. A restore
killed half-way is detected by its marker (status "restoring") and redone from scratch on
the same port, after stopping any server it left running and any pgBackRest restore still
writing into it: no orphaned cluster, process or port.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aep_ops.db import locations
from aep_ops.errors import UsageError, VerificationFailed
from aep_ops.log import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class TargetCheck:
    """What validating a target found: the backup to restore and how far behind the archive is."""

    target: datetime
    backup_label: str
    backup_stop: datetime
    last_archived_at: datetime | None
    archive_lag_seconds: float | None


def archive_facts(db: locations.LocalDb, *, now: datetime | None = None) -> dict[str, Any]:
    """Read-only facts from the running source: the archiver's state and the archive lag.

    The lag is how old the oldest data not yet in the archive can be (what a dead primary
    would lose):
    - 0 when every byte of WAL written lies in archived segments;
    - now minus the last archive when whole segments wait for the archiver (a real backlog);
    - otherwise only the open segment is pending, and archive_timeout bounds it: PostgreSQL
      switches segments within archive_timeout of an important write, while the background
      records it keeps writing on an idle server never force a switch (they are not data).
    """
    from aep_ops.pg import facts

    with db.cluster.connect(db.dbname) as conn:
        status = facts.archiver_status(conn)
        written, segment_size, timeout = conn.execute(
            "select pg_current_wal_lsn() - '0/0'::pg_lsn,"
            " (select setting::bigint * case unit when '8kB' then 8192 when 'B' then 1 else 1048576 end"
            "  from pg_settings where name = 'wal_segment_size'),"
            " (select setting::int from pg_settings where name = 'archive_timeout')").fetchone()
    now = now or datetime.now(timezone.utc)
    last = status.last_archived_time
    end = _segment_end(status.last_archived_wal, int(segment_size)) if status.last_archived_wal else None
    if last is None:
        lag = None
    elif end is not None and int(written) <= end:
        lag = 0.0
    elif end is not None and int(written) <= end + int(segment_size) and int(timeout) > 0 and not status.failing:
        lag = min((now - last).total_seconds(), float(timeout))
    else:
        lag = (now - last).total_seconds()
    return {"last_archived_at": last, "last_archived_wal": status.last_archived_wal,
            "failed_count": status.failed_count, "last_failed_wal": status.last_failed_wal,
            "last_failed_at": status.last_failed_time, "failing": status.failing, "archive_lag_seconds": lag}


def _segment_end(walfile: str, segment_size: int) -> int | None:
    """Byte position just past the segment named by ``walfile`` (also NAME.OFFSET.backup);
    None for files that name no segment (TIMELINE.history)."""
    name = walfile[:24]
    if len(name) != 24 or any(c not in "0123456789ABCDEF" for c in name):
        return None
    per_log = 0x100000000 // segment_size
    return (int(name[8:16], 16) * per_log + int(name[16:24], 16) + 1) * segment_size


def check_target(db: locations.LocalDb, target: datetime, *, now: datetime | None = None) -> TargetCheck:
    """Refuse (UsageError, exit 2) every target PostgreSQL would mishandle; return the backup to use."""
    from aep_ops.pg.target import validate_target

    now = now or datetime.now(timezone.utc)
    if not db.cluster.exists():
        raise UsageError(f"no local source cluster at {db.cluster.datadir}; run `inv db.setup` first")
    backups = db.backrest.info()
    archive = archive_facts(db, now=now)
    archived = archive["last_archived_at"]
    earliest = min((b.start for b in backups if not b.error), default=None)
    chosen = validate_target(target, now=now, last_archived_at=archived, earliest_recoverable=earliest,
                             backups=backups)
    lag = archive["archive_lag_seconds"]
    return TargetCheck(target=target, backup_label=chosen.label, backup_stop=chosen.stop,
                       last_archived_at=archived, archive_lag_seconds=lag)


def restore_state(settings: Any, name: str, target: datetime) -> tuple[str, locations.RestoredCopy | None]:
    """'absent', 'partial' (a killed restore), 'done' (promoted at this target) or 'other' (name taken)."""
    copy = locations.restored_copy(settings, name)
    if copy is None:
        base = locations.restores_dir(settings) / name
        return ("other", None) if base.exists() else ("absent", None)
    if copy.meta.get("target_time") != target.isoformat():
        return "other", copy
    return ("done", copy) if copy.meta.get("status") == "promoted" else ("partial", copy)


def restore(settings: Any, db: locations.LocalDb, name: str, check: TargetCheck, *, run_id: str | None,
            purpose: str, progress: Any = None, timeout: float = 1800) -> dict[str, Any]:
    """Restore ``check.backup_label`` + WAL up to ``check.target`` into restores/NAME and promote it."""
    say = progress or (lambda message: None)
    state, copy = restore_state(settings, name, check.target)
    if state == "other":
        raise UsageError(f"a restore named {name!r} already exists for another target or was not made by aep-ops;"
                         f" pick another --name or `inv pitr.discard {name}`")
    if state == "done":
        return dict(copy.meta)
    started = time.time()
    if copy is None:
        copy = locations.RestoredCopy(name=name, base=locations.restores_dir(settings) / name, meta={})
    port = copy.meta.get("port") or _free_port()
    copy.meta.update({"name": name, "created_by": "aep-ops", "purpose": purpose, "run_id": run_id,
                      "status": "restoring", "port": port, "target_time": check.target.isoformat(),
                      "backup_label": check.backup_label, "source": str(db.cluster.datadir),
                      "restore_started_at": datetime.fromtimestamp(started, timezone.utc).isoformat()})
    _ensure_base(copy)
    copy.save()
    cluster = copy.cluster(settings)
    _clear_partial(cluster)
    say(f"restoring backup {check.backup_label} into {copy.datadir}")
    result = db.backrest.restore(copy.datadir, target_time=check.target, set_label=check.backup_label,
                                 timeout=timeout)
    restored_at = time.time()
    cluster.configure({"archive_mode": "off", "archive_command": "", "shared_buffers": "128MB"})
    cluster.disable_archiving()
    say(f"starting the copy on port {port} and replaying WAL to {check.target.isoformat()}")
    cluster.start(timeout=timeout, wait=False)  # wait_for_promotion is the real wait (pg_ctl -w polls at 100 ms)
    promoted = cluster.wait_for_promotion(timeout=timeout, poll=0.02)  # RTO is measured: poll finely
    if promoted.archive_mode != "off":
        raise VerificationFailed(f"restored copy {name} has archive_mode={promoted.archive_mode}; it must be off")
    finished = time.time()
    copy.meta.update({
        "status": "promoted", "dsn": cluster.dsn(db.dbname), "timeline": promoted.timeline,
        "last_replayed_commit": promoted.last_replayed_commit.isoformat() if promoted.last_replayed_commit else None,
        "recovery_stop": promoted.stop_line, "restore_seconds": round(restored_at - started, 3),
        "recovery_seconds": round(finished - restored_at, 3), "promoted_at": _iso(finished),
        "pgbackrest_seconds": round(result.duration, 3),
    })
    copy.save()
    log.info("pitr.restored", name=name, port=port, timeline=promoted.timeline)
    return dict(copy.meta)


def verify(settings: Any, meta: dict[str, Any], dbname: str, smoke_queries: list[str]) -> dict[str, Any]:
    """Verify a local copy (see ``verify_copy``); a local copy must also be on a new timeline."""
    copy = locations.restored_copy(settings, meta["name"])
    with copy.cluster(settings).connect(dbname) as conn:
        return verify_copy(conn, datetime.fromisoformat(meta["target_time"]), smoke_queries, min_timeline=2)


def verify_copy(conn: Any, target: datetime, smoke_queries: list[str], *, min_timeline: int | None) -> dict[str, Any]:
    """The copy is a primary (on a new timeline when ``min_timeline``), replayed no commit after
    the target, and answers the smoke queries. Raises VerificationFailed naming each failure."""
    from aep_ops.pg import facts

    problems, results = [], {}
    if facts.is_in_recovery(conn):
        problems.append("still in recovery")
    results["timeline"] = facts.timeline(conn) if min_timeline else None
    if min_timeline and results["timeline"] < min_timeline:
        problems.append(f"timeline {results['timeline']}: the copy was never promoted")
    last = facts.last_replayed_commit(conn)
    results["last_replayed_commit"] = last.isoformat() if last else None
    if last is not None and last > target:
        problems.append(f"replayed a commit at {last.isoformat()}, after the target {target.isoformat()}")
    answers, failed = facts.smoke_queries(conn, smoke_queries)
    results.update({f"smoke: {q}": a for q, a in answers.items()})
    problems += [f"smoke query {p}" for p in failed]
    if problems:
        raise VerificationFailed("; ".join(problems), details=results)
    return results


def discard(settings: Any, name: str) -> bool:
    """Stop and remove a copy aep-ops created; refuse anything else. False if already gone."""
    copy = locations.restored_copy(settings, name)
    base = locations.restores_dir(settings) / name
    if copy is None:
        if base.exists():
            raise UsageError(f"{base} was not created by aep-ops (no {locations.RESTORE_MARKER}); refusing to remove it")
        return False
    if copy.meta.get("cutover"):
        raise UsageError(f"restore {name} is the database the application was cut over to; refusing to remove it")
    cluster = copy.cluster(settings)
    if cluster.postmaster_pid() is not None:
        cluster.stop(mode="immediate")  # its files are deleted next: a shutdown checkpoint is wasted work
    _remove_soon(base)
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
    from aep_ops.pg import orphans

    orphans.stop_writers(cluster.datadir)
    if cluster.postmaster_pid() is not None:
        cluster.stop(mode="immediate")
    if cluster.datadir.exists():
        shutil.rmtree(cluster.datadir)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()
