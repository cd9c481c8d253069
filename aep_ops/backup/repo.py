"""Facts about the local pgBackRest stanza and its WAL archive, shared by db.setup and backup.*.

Three questions an on-call engineer asks: is the stanza set up as configured (config file,
directories, stanza in every repo, the source's archive_command pointing at it)? Does WAL
reach the archive right now (a forced switch, watched in pg_stat_archiver, with a fast
failure when the archiver reports an error)? Is the archived WAL continuous from the oldest
backup to the newest segment (pgBackRest 2.45's ``verify`` does not report a missing
segment, so the repo listing is checked here)?

Imported only inside step methods (it imports aep_ops.pg at module level).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import stat
import time
from dataclasses import dataclass
from typing import Any

from aep_ops.base.errors import StepFailed, VerificationFailed
from aep_ops.pg import facts
from aep_ops.pg.connect import wrap_errors
from aep_ops.pg.pgbackrest import render_config

SEGMENT_RE = re.compile(r"^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$")
_ARCHIVED_RE = re.compile(r"(?:^|/)([0-9A-F]{24})-[0-9a-f]{40}(?:\.[a-z0-9]+)?$")
_STANZA_OK = (0, 2)  # ok, no valid backups (the stanza exists)
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024


def pgbackrest(db: Any, command: str, *options: str, args: tuple[str, ...] = (), timeout: float = 120) -> Any:
    """Run one pgBackRest command as the postgres user; ``args`` follow the command (repo-ls PATH).

    The driver's runner puts everything before the command, which repo-ls's path cannot be.
    """
    from aep_ops.base import redact

    b = db.backrest
    argv = [b.binary, f"--config={b.config.config_path}", f"--stanza={b.config.stanza}", *options, command, *args]
    result = b.executor.run(argv, timeout=timeout, user=b.os_user, cwd="/")
    if not result.ok:
        detail = ((result.stderr.strip() or result.stdout.strip()).splitlines() or [""])[-1]
        raise StepFailed(f"pgbackrest {command} for stanza {b.config.stanza} failed (exit {result.exit_status}):"
                         f" {redact.redact(detail)}; see {b.config.log_path}")
    return result


def stanza_problems(db: Any) -> list[str]:
    """What keeps the stanza from being as configured; empty when it is. Read-only."""
    problems = _config_file_problems(db)
    cfg = db.backrest.config
    uid = pwd.getpwnam(db.backrest.os_user).pw_uid
    bad = [p for p in (cfg.repo1_path, cfg.log_path, cfg.lock_path, cfg.spool_path)
           if not os.path.isdir(p) or os.stat(p).st_uid != uid]
    if bad:
        problems.append(f"directories missing or not owned by {db.backrest.os_user}: {', '.join(bad)}")
    problems += archive_command_problems(db)
    if not problems:  # only a correct config file can say whether the stanza exists
        problems += _stanza_status_problems(db)
    return problems


def _config_file_problems(db: Any) -> list[str]:
    cfg = db.backrest.config
    path = cfg.config_path
    if not os.path.isfile(path):
        return [f"config {path} not written"]
    st = os.stat(path)
    wanted_mode = 0o600 if cfg.has_secrets else 0o640
    with open(path) as fh:  # may hold S3 keys and the cipher passphrase: compared, never logged
        same = fh.read() == render_config(cfg)
    if not same:
        return [f"config {path} differs from the configuration"]
    if stat.S_IMODE(st.st_mode) != wanted_mode:
        return [f"config {path} has mode {stat.S_IMODE(st.st_mode):o}, not {wanted_mode:o}"]
    return []


def archive_command_problems(db: Any) -> list[str]:
    """The running source must archive with this stanza's archive_command, from conf.d."""
    wanted = db.backrest.archive_command()
    with db.cluster.connect(connect_timeout=5) as conn:
        rows = facts.settings_with_source(conn, ["archive_mode", "archive_command"])
    problems = []
    if rows["archive_mode"][0] != "on":
        problems.append("archive_mode is off on the source (run `inv db.setup`, which restarts it)")
    command, sourcefile = rows["archive_command"]
    if command != wanted:
        where = f" (set in {sourcefile})" if sourcefile else ""
        problems.append(f"the source's archive_command does not push to stanza {db.backrest.config.stanza}{where}")
    return problems


def fix_archive_command(db: Any, *, timeout: float = 10) -> bool:
    """Point the running source's archive_command at the stanza (conf.d, no ALTER SYSTEM override), reload."""
    problems = archive_command_problems(db)
    if not problems:
        return False
    if any(p.startswith("archive_mode") for p in problems):
        raise StepFailed(f"source {db.cluster.datadir}: {'; '.join(problems)}")
    db.cluster.configure(db.source_settings())
    with db.cluster.connect(connect_timeout=5) as conn, wrap_errors("resetting archive_command", conn):
        override = conn.execute("select 1 from pg_file_settings where name = 'archive_command'"
                                " and sourcefile like '%%postgresql.auto.conf'").fetchone()
        if override:
            conn.execute("alter system reset archive_command")
        conn.execute("select pg_reload_conf()")
    deadline = time.monotonic() + timeout
    while problems := archive_command_problems(db):
        if time.monotonic() > deadline:
            raise StepFailed(f"source {db.cluster.datadir}: {'; '.join(problems)} after a reload;"
                             f" read its log {db.cluster.logfile}")
        time.sleep(0.1)
    return True


def _stanza_status_problems(db: Any) -> list[str]:
    try:
        data = json.loads(pgbackrest(db, "info", "--output=json").stdout)
    except (StepFailed, ValueError) as exc:
        return [f"cannot read the stanza's status ({exc})"]
    entry = next((e for e in data if e.get("name") == db.backrest.config.stanza), {})
    problems = []
    for repo in entry.get("repo", []):
        status = repo.get("status") or {}
        if status.get("code") not in _STANZA_OK:
            problems.append(f"stanza {db.backrest.config.stanza} not ready in repo{repo.get('key')}:"
                            f" {status.get('message')}")
    return problems or ([] if entry.get("repo") else ["stanza status unknown"])


# --- archiving end to end -------------------------------------------------------------------


@dataclass(frozen=True)
class Roundtrip:
    wal: str
    seconds: float
    status: Any  # facts.ArchiverStatus after the segment arrived


def archive_roundtrip(db: Any, *, timeout: float = 60, poll: float = 0.1) -> Roundtrip:
    """Write one WAL record, switch segments, wait until pg_stat_archiver shows it archived.

    Fails fast (VerificationFailed) when the archiver reports a failure after the switch,
    naming the failing segment and count, instead of waiting out the deadline.
    """
    with db.cluster.connect(connect_timeout=5) as conn:
        with wrap_errors("forcing a WAL switch", conn):
            started = conn.execute("select clock_timestamp()").fetchone()[0]
            # a tiny non-transactional WAL record, so there is always a segment to switch away from
            conn.execute("select pg_logical_emit_message(false, 'aep-ops', 'archive check')")
            wal = facts.switch_wal(conn)
        t0 = time.monotonic()
        while True:
            status = facts.archiver_status(conn)
            if facts.is_archived(wal, status, facts.archive_state(conn, wal)):
                return Roundtrip(wal=wal, seconds=time.monotonic() - t0, status=status)
            if status.failing and status.last_failed_time >= started:
                raise VerificationFailed(failure_text(status, db), details=archiver_details(status))
            if time.monotonic() - t0 > timeout:
                raise VerificationFailed(f"WAL {wal} was not archived within {timeout:g}s (last archived:"
                                         f" {status.last_archived_wal or 'none'}); check archive_command and"
                                         f" {db.cluster.logfile}", details=archiver_details(status))
            time.sleep(poll)


def failure_text(status: Any, db: Any) -> str:
    return (f"archiving is failing: {status.failed_count} failure(s) since stats reset, last failed WAL"
            f" {status.last_failed_wal} at {status.last_failed_time:%Y-%m-%d %H:%M:%S%z}, last archived"
            f" {status.last_archived_wal or 'none'}; check archive_command (`show archive_command`) and the"
            f" server log {db.cluster.logfile}")


def archiver_details(status: Any, now: Any = None) -> dict[str, Any]:
    """pg_stat_archiver as journal outputs, plus the archive lag in seconds (None: never archived)."""
    from datetime import datetime, timezone

    now = now or datetime.now(timezone.utc)
    lag = (now - status.last_archived_time).total_seconds() if status.last_archived_time else None
    return {"archived_count": status.archived_count, "last_archived_wal": status.last_archived_wal,
            "last_archived_time": _iso(status.last_archived_time), "failed_count": status.failed_count,
            "last_failed_wal": status.last_failed_wal, "last_failed_time": _iso(status.last_failed_time),
            "failing": status.failing, "lag_seconds": None if lag is None else round(lag, 1)}


def list_backups(settings: Any) -> list[dict[str, Any]]:
    """Every backup of the environment's stanza, oldest first, as JSON-safe records (``backup.list``)."""
    from aep_ops.db import locations
    from aep_ops.db.source import backup_outputs, require_self_hosted

    require_self_hosted(settings, "backup.list")
    return [backup_outputs(b) for b in locations.local_db(settings).backrest.info()]


def _iso(when: Any) -> str | None:
    return when.isoformat() if when else None


# --- WAL continuity -------------------------------------------------------------------------


def archived_segments(db: Any, repo: int) -> dict[str, set[str]]:
    """WAL segment names per archive id (e.g. ``15-1``) listed in ``repo``."""
    path = f"archive/{db.backrest.config.stanza}"
    result = pgbackrest(db, "repo-ls", f"--repo={repo}", "--recurse", "--output=json", args=(path,), timeout=300)
    found: dict[str, set[str]] = {}
    for name, entry in json.loads(result.stdout or "{}").items():
        match = _ARCHIVED_RE.search(name)
        if entry.get("type") == "file" and match and "/" in name:
            found.setdefault(name.split("/", 1)[0], set()).add(match.group(1))
    return found


def segment_in_repo(db: Any, repo: int, wal: str) -> bool:
    """Is segment ``wal`` in ``repo``? Lists only its directory, not the whole archive."""
    base = f"archive/{db.backrest.config.stanza}"
    ids = json.loads(pgbackrest(db, "repo-ls", f"--repo={repo}", "--output=json", args=(base,)).stdout or "{}")
    for archive_id, entry in ids.items():
        if entry.get("type") != "path" or not re.fullmatch(r"\d+-\d+", archive_id):
            continue
        listed = pgbackrest(db, "repo-ls", f"--repo={repo}", "--output=json", f"--filter=^{wal}-",
                            args=(f"{base}/{archive_id}/{wal[:16]}",)).stdout
        if json.loads(listed or "{}"):
            return True
    return False


def segment_position(name: str, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Segment number along the WAL stream (the timeline is not part of the position)."""
    match = SEGMENT_RE.match(name[:24])
    if not match:
        raise ValueError(f"not a WAL segment name: {name!r}")
    per_log = 0x100000000 // segment_size
    return int(match.group(2), 16) * per_log + int(match.group(3), 16)


def segment_name(timeline: int, position: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> str:
    per_log = 0x100000000 // segment_size
    return f"{timeline:08X}{position // per_log:08X}{position % per_log:08X}"


def wal_gaps(segments: set[str], start: str, end: str | None = None,
             segment_size: int = DEFAULT_SEGMENT_SIZE) -> list[dict[str, Any]]:
    """Runs of missing segment positions from ``start`` to the newest segment present (or ``end``,
    e.g. the newest backup's last WAL segment, when that is later).

    A position counts as present on any timeline (after a promotion the stream continues on
    the next timeline). Each gap: first and last missing segment name and how many.
    """
    present = {segment_position(s, segment_size) for s in segments}
    first = segment_position(start, segment_size)
    last = max([*present, *([segment_position(end, segment_size)] if end else [])], default=first - 1)
    timeline = int(start[:8], 16)
    gaps, run_start = [], None
    for pos in range(first, last + 2):
        missing = pos <= last and pos not in present
        if missing and run_start is None:
            run_start = pos
        elif not missing and run_start is not None:
            gaps.append(_gap(timeline, run_start, pos - 1, segment_size))
            run_start = None
    return gaps


def _gap(timeline: int, first: int, last: int, segment_size: int) -> dict[str, Any]:
    return {"from": segment_name(timeline, first, segment_size), "to": segment_name(timeline, last, segment_size),
            "segments": last - first + 1}
