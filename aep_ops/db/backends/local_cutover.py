"""Backend ``local``: cut the application over to a database and leave that database protected.

The four things a cutover does (``pitr.cutover``'s steps), both ways (to a restored copy, and
back to ``aep-source`` or another copy while it exists):

1. Archiving on for the new primary. A restored copy runs with ``archive_mode=off`` (so a
   drill's copy never writes into production's archive); at cutover it gets the PITR settings
   of a source (``LocalDb.source_settings``) and a restart, before the application connects, so
   no write the application makes goes unarchived.
   **A new stanza per primary** (``aep-NAME``, its own config file, in the same repositories),
   not the old stanza on the copy's new timeline. pgBackRest would follow the timeline, but
   the old source still runs and keeps archiving timeline 1 into stanza ``aep``: two live
   primaries would write one archive, a restore with target timeline "latest" from the old
   stanza would follow the copy's timeline even after a cut back, and pgBackRest's backups of
   ``aep`` could be taken from either cluster. One stanza per primary makes a collision
   impossible by construction, and a cut back finds the original's archive exactly as it kept
   it. The copy's timeline history file (written while archiving was off) is pushed too, so its
   archive describes its own timeline.
2. The pointer STATE_DIR/pg/active.json, written atomically, recording the previous database:
   from then on ``locations.local_db`` (every runbook) resolves to the new primary.
3. A full backup of the new primary right away (its stanza holds none yet); on a cut back, only
   when the original has no full backup newer than ``backup.max_age_hours``.
4. A forced WAL switch reaches every configured repository.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from aep_ops.db import locations
from aep_ops.base.errors import ExecutionError, StepFailed, UsageError, VerificationFailed
from aep_ops.base.log import get_logger

log = get_logger(__name__)

_ARCHIVE_KEYS = ("archive_mode", "archive_command", "archive_library")
DEFAULT_MAX_AGE_HOURS = 26


def target_db(settings: Any, name: str) -> locations.LocalDb:
    """The database ``name`` (``aep-source`` or a verified copy); UsageError when it cannot be a primary."""
    if name == locations.SOURCE_NAME:
        db = locations.local_db(settings, name)
        if not db.cluster.exists():
            if locations.active_name(settings) == locations.SOURCE_NAME:  # never cut over: nothing to go back to
                raise UsageError(f"there is no source at {db.cluster.datadir} yet and nothing was cut over;"
                                 f" create it with `inv db.setup --env {settings.env_name}`")
            raise UsageError(f"the original source at {db.cluster.datadir} no longer exists; cut over to a copy"
                             " in `inv pitr.list` instead")
        return db
    copy = locations.restored_copy(settings, name)
    if copy is None or copy.meta.get("status") != "promoted":
        raise UsageError(f"no verified restore named {name} (see `inv pitr.list`; the original is"
                         f" {locations.SOURCE_NAME})")
    if copy.meta.get("fast_replay"):
        unsafe = ", ".join(f"{k}={v}" for k, v in copy.meta["fast_replay"].items())
        raise UsageError(f"{name} is a drill's throw-away copy, started with {unsafe}: a crash could have left it"
                         f" corrupt, so it never serves the application; restore a copy for that with"
                         f" `inv pitr.restore --env {settings.env_name} --target-time ...`")
    return locations.local_db(settings, name)


# --- 1. archiving on ---------------------------------------------------------------------


def archiving_problems(db: locations.LocalDb) -> list[str]:
    """What keeps ``db`` from archiving into its own stanza now (read-only); [] when it does."""
    from aep_ops.pg import facts
    from aep_ops.pg.pgbackrest import render_config

    if db.cluster.postmaster_pid() is None:
        return [f"{db.name} is not running"]
    problems = []
    current = db.cluster.current_settings()
    drift = sorted(k for k, v in db.source_settings().items() if current.get(k) != str(v))
    if drift:
        problems.append(f"settings differ from a source's ({', '.join(drift)})")
    with db.cluster.connect(connect_timeout=5) as conn:
        live = facts.settings_with_source(conn, ["archive_mode", "archive_command"])
        if live["archive_mode"][0] != "on" or facts.pending_restart(conn):
            problems.append("archive_mode is not on (needs a restart)")
        elif live["archive_command"][0] != db.backrest.archive_command():
            problems.append(f"archive_command does not push to stanza {db.backrest.config.stanza}")
    cfg = db.backrest.config
    if not os.path.isfile(cfg.config_path):
        problems.append(f"config {cfg.config_path} not written")
    else:
        with open(cfg.config_path) as fh:  # may hold S3 keys: compared, never logged
            if fh.read() != render_config(cfg):
                problems.append(f"config {cfg.config_path} differs from the configuration")
    if not problems:
        for repo in [1, 2] if cfg.repo2 is not None else [1]:
            why = db.backrest.repo_problem(repo)
            if why:
                problems.append(f"stanza {cfg.stanza} not ready in repo{repo}: {why}")
    return problems


def plan_protect(settings: Any, name: str) -> tuple[bool, str, dict[str, Any]]:
    db = target_db(settings, name)
    stanza = db.backrest.config.stanza
    problems = archiving_problems(db)
    if not problems:
        return False, f"{name} archives WAL into stanza {stanza}", {"stanza": stanza}
    return (True, f"turn WAL archiving on for {name} into stanza {stanza} ({'; '.join(problems)}): settings,"
            " restart, stanza-create", {"stanza": stanza, "problems": problems})


def apply_protect(settings: Any, name: str, progress: Any) -> dict[str, Any]:
    from aep_ops.pg import facts

    db = target_db(settings, name)
    cluster = db.cluster
    db.backrest.ensure_dirs()
    db.backrest.write_config()
    cluster.configure(db.source_settings())
    _drop_auto_conf_archiving(cluster)
    if cluster.postmaster_pid() is None:
        progress(f"starting {name} with archiving on")
        cluster.start(timeout=120)
    else:
        with cluster.connect(connect_timeout=5) as conn:
            needs_restart = facts.setting(conn, "archive_mode") != "on" or bool(facts.pending_restart(conn))
            if not needs_restart:
                conn.execute("select pg_reload_conf()")
        if needs_restart:
            progress(f"restarting {name} to turn archive_mode on")
            cluster.stop(timeout=120)
            cluster.start(timeout=120)
    progress(f"pgbackrest stanza-create --stanza={db.backrest.config.stanza}")
    db.backrest.stanza_create()
    history = _push_history(db)
    log.info("pitr.cutover.archiving_on", name=name, stanza=db.backrest.config.stanza, history=history)
    return {"stanza": db.backrest.config.stanza, "config_path": db.backrest.config.config_path,
            "history_pushed": history}


def verify_protect(settings: Any, name: str) -> None:
    problems = archiving_problems(target_db(settings, name))
    if problems:
        raise VerificationFailed(f"{name} does not archive yet: {'; '.join(problems)}")


def _drop_auto_conf_archiving(cluster: Any) -> None:
    """postgresql.auto.conf is read last: an archive_* line there (pgBackRest's restore writes
    archive_mode=off) would win over conf.d."""
    from aep_ops.pg import fsutil

    auto = cluster.datadir / "postgresql.auto.conf"
    if not auto.exists():
        return
    lines = auto.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.split("=", 1)[0].strip().lower() not in _ARCHIVE_KEYS]
    if kept != lines:
        fsutil.write_file(auto, "".join(kept), mode=0o600, owner=cluster.os_user)


def _push_history(db: locations.LocalDb) -> str | None:
    """Archive the history file of the copy's timeline (made while archiving was off); idempotent
    (pgBackRest accepts a file it already holds with the same checksum)."""
    from aep_ops.base import redact
    from aep_ops.pg import facts

    with db.cluster.connect(connect_timeout=5) as conn:
        tli = facts.timeline(conn)
    path = db.cluster.datadir / "pg_wal" / f"{tli:08X}.history"
    if tli < 2 or not path.is_file():
        return None
    b = db.backrest
    result = b.executor.run([b.binary, f"--config={b.config.config_path}", f"--stanza={b.config.stanza}",
                             "archive-push", str(path)], timeout=120, user=b.os_user, cwd="/")
    if not result.ok:
        raise StepFailed(f"pgbackrest archive-push of {path.name} for stanza {b.config.stanza} failed:"
                         f" {redact.redact(result.stderr_tail(1))}; see {b.config.log_path}")
    return path.name


# --- 2. the pointer ------------------------------------------------------------------------


def plan_pointer(settings: Any, name: str) -> tuple[bool, str, dict[str, Any]]:
    db = target_db(settings, name)
    current = locations.active_name(settings)
    if current == name:
        return False, f"the application already uses {name}", {"dsn": db.dsn(), "from": name, "to": name}
    try:
        previous = locations.local_db(settings, current).dsn()
    except UsageError:  # the active copy is gone (removed by hand): moving away from it is the fix
        previous = locations.active_record(settings).get("dsn")
    return (True, f"point the application at {name} ({db.dsn()}); previous: {current}",
            {"previous": previous, "previous_name": current, "from": current, "to": name})


def apply_pointer(settings: Any, name: str, details: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    db = target_db(settings, name)
    record = {"name": name, "dsn": db.dsn(), "previous": details["previous"],
              "previous_name": details["previous_name"], "at": datetime.now(timezone.utc).isoformat(),
              "run_id": run_id}
    pointer = locations.active_pointer(settings)
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(record, indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, pointer)
    copy = locations.restored_copy(settings, name)
    if copy is not None:  # "was a primary": never reaped as a drill leftover
        copy.meta["cutover"] = True
        copy.meta["cutover_at"] = record["at"]
        copy.save()
    log.info("pitr.cutover.pointed", name=name, previous=details["previous_name"])
    return {**record, "from": details["previous_name"], "to": name}


def previous_name(settings: Any) -> str | None:
    return locations.active_record(settings).get("previous_name")


# --- 3. the immediate backup ---------------------------------------------------------------


def plan_backup(settings: Any, name: str) -> tuple[bool, str, dict[str, Any]]:
    db = target_db(settings, name)
    stanza = db.backrest.config.stanza
    if not os.path.isfile(db.backrest.config.config_path):  # a dry run: step 1 writes it
        return True, f"take a full backup of {name} (stanza {stanza} is created by the step before)", \
            {"stanza": stanza}
    if db.backrest.backup_running():
        return True, f"a backup of stanza {stanza} is running: wait for it and adopt it", {"stanza": stanza}
    backups = [b for b in db.backrest.info() if (b.repo_key or 1) == 1 and not b.error]
    full = [b for b in backups if b.type == "full"]
    max_age = int((settings.env.get("backup") or {}).get("max_age_hours") or DEFAULT_MAX_AGE_HOURS)
    if not full:
        return True, f"take a full backup of {name} (stanza {stanza} has none yet)", {"stanza": stanza}
    age = datetime.now(timezone.utc) - backups[-1].stop
    if age > timedelta(hours=max_age):
        return (True, f"take a full backup of {name}: the newest of stanza {stanza} ended"
                f" {age.total_seconds() / 3600:.1f} h ago (> {max_age} h)", {"stanza": stanza})
    return False, f"stanza {stanza} has full backup {full[-1].label}; newest ended {age.total_seconds():.0f}s ago", \
        {**_backup_outputs(full[-1]), "stanza": stanza}


def apply_backup(settings: Any, name: str, progress: Any) -> dict[str, Any]:
    db = target_db(settings, name)
    progress(f"pgbackrest backup --type=full --repo=1 --stanza={db.backrest.config.stanza}")
    backup = db.backrest.backup("full", repo=1, progress=progress)
    return {**_backup_outputs(backup), "stanza": db.backrest.config.stanza}


def _backup_outputs(backup: Any) -> dict[str, Any]:
    return {"label": backup.label, "type": backup.type, "start": backup.start.isoformat(),
            "stop": backup.stop.isoformat(), "wal_start": backup.wal_start, "wal_stop": backup.wal_stop}


def verify_backup(settings: Any, name: str, outputs: dict[str, Any]) -> None:
    if outputs["label"] not in {b.label for b in target_db(settings, name).backrest.info()}:
        raise VerificationFailed(f"backup {outputs['label']} is not listed by `pgbackrest info`")


# --- 4. WAL reaches the archive --------------------------------------------------------------


def check_archiving(settings: Any, name: str) -> dict[str, Any]:
    """A forced WAL switch seen archived (pg_stat_archiver), then pgBackRest's own ``check``, which
    switches again and finds the segment in every configured repository of the stanza."""
    import time

    from aep_ops.pg import facts

    db = target_db(settings, name)
    started = time.monotonic()
    try:
        with db.cluster.connect(connect_timeout=5) as conn:
            wal = facts.switch_wal(conn)
            facts.wait_archived(conn, wal, timeout=120, poll=0.05)
        db.backrest.check(timeout=180)
    except (StepFailed, ExecutionError) as exc:
        raise VerificationFailed(f"WAL archiving of {name} into stanza {db.backrest.config.stanza} does not work:"
                                 f" {exc}; fix it, then `inv backup.check`") from exc
    return {"wal": wal, "seconds": round(time.monotonic() - started, 2), "stanza": db.backrest.config.stanza,
            "repos": [1, 2] if db.backrest.config.repo2 is not None else [1]}
