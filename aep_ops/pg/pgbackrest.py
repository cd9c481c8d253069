"""A thin driver for pgBackRest: render its config, run its commands, parse its answers.

pgBackRest does the hard work (parallel compressed backups, WAL archive, restore);
this module only makes calling it safe and repeatable: commands run as the postgres
user with deadlines, the config file is written atomically and never logged (it can hold
S3 keys and the cipher passphrase), and a restore refuses to write over its source.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from aep_ops.base.log import get_logger

from aep_ops.base import redact
from aep_ops.base.errors import StepFailed, ToolMissing, UsageError, VerificationFailed
from aep_ops.executors.base import CommandResult
from aep_ops.executors.local import LocalExecutor
from aep_ops.pg import fsutil

log = get_logger(__name__)

PGBACKREST = "/usr/bin/pgbackrest"
INSTALL_HINT = "install pgbackrest (make test / make drill install it)"
_STANZA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REPO_OK = (0, 2)  # ok; no valid backups yet (the repo answers and holds the stanza)


@dataclass(frozen=True)
class S3Repo:
    """repo2 on S3 (or anything S3-compatible). Secrets are plain strings resolved by the caller."""

    bucket: str
    endpoint: str
    region: str
    key: str = field(repr=False)
    key_secret: str = field(repr=False)
    port: int = 443
    path: str = "/pgbackrest"
    verify_tls: bool = True
    ca_file: str | None = None
    uri_style: str = "path"
    cipher_pass: str | None = field(default=None, repr=False)
    cipher_type: str = "aes-256-cbc"
    retention_full: int = 2


@dataclass(frozen=True)
class Timeouts:
    """pgBackRest's own deadlines, so that a repository that does not answer fails with its name
    instead of hanging (pgBackRest's defaults: io 60 s, db 1800 s, protocol 1830 s).

    ``io``: the longest wait for one read or write to make progress (an S3 endpoint that accepts
    the connection and never answers); pgBackRest retries a request a few times, so a dead S3
    repo fails after a small multiple of it. ``db``: one query (pg_backup_start/stop).
    ``protocol``: a silent pgBackRest worker; it must exceed ``db`` (pgBackRest refuses otherwise).
    ``archive``: how long archive-push waits for the asynchronous pusher, and ``check`` for a segment.
    """

    io: float = 30
    db: float = 1800
    protocol: float = 1830
    archive: float = 60

    @classmethod
    def from_settings(cls, values: dict | None) -> "Timeouts":
        """``backup.timeouts`` of an environment; protocol follows db unless it is set."""
        values = values or {}
        db = float(values.get("db") or cls.db)
        return cls(io=float(values.get("io") or cls.io), db=db,
                   protocol=float(values.get("protocol") or db + 30), archive=float(values.get("archive") or cls.archive))

    def __post_init__(self) -> None:
        if min(self.io, self.db, self.protocol, self.archive) <= 0:
            raise UsageError("pgBackRest timeouts must be positive")
        if self.protocol <= self.db:
            raise UsageError(f"pgBackRest protocol-timeout ({self.protocol:g}s) must exceed db-timeout"
                             f" ({self.db:g}s)")


@dataclass(frozen=True)
class PgBackRestConfig:
    """Everything the config file says: one stanza, repo1 on local disk, optional repo2 on S3."""

    stanza: str
    config_path: str
    repo1_path: str
    log_path: str
    lock_path: str
    spool_path: str
    pg1_path: str
    pg1_port: int
    pg1_socket_path: str
    pg1_user: str = "postgres"
    repo1_retention_full: int = 2
    process_max: int = 2
    archive_async: bool = False
    repo2: S3Repo | None = None
    log_level_file: str = "info"
    timeouts: "Timeouts" = field(default_factory=lambda: Timeouts())

    @property
    def has_secrets(self) -> bool:
        return self.repo2 is not None


@dataclass(frozen=True)
class Backup:
    """One backup as ``pgbackrest info --output=json`` reports it (times are aware UTC)."""

    label: str
    type: str
    start: datetime
    stop: datetime
    wal_start: str | None = None
    wal_stop: str | None = None
    database_size: int | None = None
    repo_size: int | None = None
    repo_key: int | None = None
    error: bool = False


def render_config(cfg: PgBackRestConfig) -> str:
    """The pgbackrest.conf text. Holds secrets when repo2 is set: never log or print it."""
    if not _STANZA_RE.match(cfg.stanza):
        raise UsageError(f"invalid pgBackRest stanza name {cfg.stanza!r}: use letters, digits, _ . -")
    glob: list[tuple[str, Any]] = [
        ("repo1-path", cfg.repo1_path),
        ("repo1-retention-full", cfg.repo1_retention_full),
        ("log-path", cfg.log_path),
        ("lock-path", cfg.lock_path),
        ("spool-path", cfg.spool_path),
        ("log-level-file", cfg.log_level_file),
        ("process-max", cfg.process_max),
        ("compress-type", "lz4"),
        ("start-fast", True),
        # With a second repo, asynchronous archiving: a repo that does not answer then delays WAL
        # to the others by a few io-timeouts instead of stopping them (pgBackRest multi-repo docs).
        ("archive-async", cfg.archive_async or cfg.repo2 is not None),
        ("io-timeout", _seconds(cfg.timeouts.io)),
        ("db-timeout", _seconds(cfg.timeouts.db)),
        ("protocol-timeout", _seconds(cfg.timeouts.protocol)),
        ("archive-timeout", _seconds(cfg.timeouts.archive)),
    ]
    if cfg.repo2 is not None:
        r = cfg.repo2
        glob += [
            ("repo2-type", "s3"),
            ("repo2-path", r.path),
            ("repo2-retention-full", r.retention_full),
            ("repo2-s3-endpoint", r.endpoint),
            ("repo2-storage-port", r.port),
            ("repo2-s3-bucket", r.bucket),
            ("repo2-s3-region", r.region),
            ("repo2-s3-key", r.key),
            ("repo2-s3-key-secret", r.key_secret),
            ("repo2-s3-uri-style", r.uri_style),
            ("repo2-storage-verify-tls", r.verify_tls),
        ]
        if r.ca_file:
            glob.append(("repo2-storage-ca-file", r.ca_file))
        if r.cipher_pass:
            glob += [("repo2-cipher-type", r.cipher_type), ("repo2-cipher-pass", r.cipher_pass)]
    stanza = [
        ("pg1-path", cfg.pg1_path),
        ("pg1-port", cfg.pg1_port),
        ("pg1-socket-path", cfg.pg1_socket_path),
        ("pg1-user", cfg.pg1_user),
    ]
    lines = ["# Written by aep-ops; changes are overwritten.", "[global]"]
    lines += [f"{k}={_value(k, v)}" for k, v in glob]
    lines += ["", f"[{cfg.stanza}]"]
    lines += [f"{k}={_value(k, v)}" for k, v in stanza]
    return "\n".join(lines) + "\n"


def parse_info(text: str, stanza: str) -> list[Backup]:
    """Backups of ``stanza`` from ``info --output=json``, oldest first."""
    backups: list[Backup] = []
    for entry in _stanzas(text, stanza):
        for b in entry.get("backup", []):
            info = b.get("info", {})
            backups.append(
                Backup(
                    label=b["label"],
                    type=b["type"],
                    start=_epoch(b["timestamp"]["start"]),
                    stop=_epoch(b["timestamp"]["stop"]),
                    wal_start=(b.get("archive") or {}).get("start"),
                    wal_stop=(b.get("archive") or {}).get("stop"),
                    database_size=info.get("size"),
                    repo_size=(info.get("repository") or {}).get("size"),
                    repo_key=(b.get("database") or {}).get("repo-key"),
                    error=bool(b.get("error", False)),
                )
            )
    return sorted(backups, key=lambda b: (b.stop, b.label))


def parse_backup_lock_held(text: str, stanza: str) -> bool:
    """From ``info --output=json``: does a running backup hold ``stanza``'s lock (status.lock.backup.held)?"""
    return any(((entry.get("status") or {}).get("lock") or {}).get("backup", {}).get("held", False)
               for entry in _stanzas(text, stanza))


def _stanzas(text: str, stanza: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StepFailed(f"pgbackrest info returned invalid JSON ({exc.msg})") from exc
    return [entry for entry in data if entry.get("name") == stanza]


def format_target_time(when: datetime) -> str:
    """A recovery target both pgBackRest and PostgreSQL parse, always with an explicit offset."""
    from aep_ops.base.timefmt import aware_utc

    return aware_utc(when).strftime("%Y-%m-%d %H:%M:%S.%f+00")


class PgBackRest:
    """Runs pgBackRest for one stanza as the postgres user through LocalExecutor."""

    def __init__(
        self,
        config: PgBackRestConfig,
        *,
        executor: LocalExecutor | None = None,
        os_user: str = "postgres",
        binary: str = PGBACKREST,
    ) -> None:
        self.config = config
        if config.repo2 is not None:  # mask them in any log line or error that might echo them
            for secret in (config.repo2.key, config.repo2.key_secret, config.repo2.cipher_pass):
                redact.register(secret or "")
        self.executor = executor or LocalExecutor()
        self.os_user = os_user
        self.binary = os.path.abspath(binary)  # `backup.pgbackrest_bin`: never an argv[0] that reads as an option

    def write_config(self) -> bool:
        """Write the config file if its content or mode differ; return whether it changed."""
        secret = self.config.has_secrets
        changed = fsutil.write_file(
            self.config.config_path,
            render_config(self.config),
            mode=0o600 if secret else 0o640,
            owner=self.os_user if secret else "root",
            group=self.os_user,
        )
        event = "pgbackrest.config.written" if changed else "pgbackrest.config.unchanged"
        log.info(event, path=self.config.config_path)
        return changed

    def ensure_dirs(self) -> None:
        """repo1, log, lock and spool directories, owned by the postgres user."""
        c = self.config
        for path in (c.repo1_path, c.log_path, c.lock_path, c.spool_path):
            fsutil.ensure_dir(path, owner=self.os_user, mode=0o750)

    def archive_command(self) -> str:
        """The ``archive_command`` for postgresql.conf (paths shell-quoted; PostgreSQL runs it via sh)."""
        return " ".join(
            [
                shlex.quote(self.binary),
                shlex.quote(f"--config={self.config.config_path}"),
                shlex.quote(f"--stanza={self.config.stanza}"),
                "archive-push",
                "%p",
            ]
        )

    def stanza_create(self, *, timeout: float = 120) -> CommandResult:
        return self._run("stanza-create", timeout=timeout)

    def check(self, *, timeout: float = 120) -> CommandResult:
        """Proves the archive works end to end (forces a WAL switch and waits for it)."""
        return self._run("check", timeout=timeout)

    def backup(self, type: str = "full", *, repo: int | None = None, timeout: float = 3600,
               progress: Callable[[str], None] | None = None) -> Backup:
        """Take a backup and return it (the one label ``info`` did not list before).

        A backup already running on the stanza (the one a killed run left behind, or another
        tool's) is waited for, not collided with: pgBackRest would refuse with "unable to
        acquire lock". When it produced a backup of the type (and repo) asked for, that one is returned.
        """
        if type not in ("full", "diff", "incr"):
            raise UsageError(f"backup type must be full, diff or incr, not {type!r}")
        text = self._info_text()
        before = {b.label for b in parse_info(text, self.config.stanza)}
        if parse_backup_lock_held(text, self.config.stanza):
            (progress or (lambda message: None))(
                f"a pgBackRest backup of stanza {self.config.stanza} is already running (left by a killed run,"
                " or started by another tool); waiting for it to finish")
            self.wait_for_running_backup(timeout=timeout)
            done = [b for b in self.info() if b.label not in before and b.type == type and not b.error
                    and (repo is None or (b.repo_key or 1) == repo)]
            if done:
                log.info("pgbackrest.backup.adopted", stanza=self.config.stanza, label=done[-1].label, type=type)
                return done[-1]
        options = [f"--type={type}"] + ([f"--repo={repo}"] if repo else [])
        self._run("backup", *options, timeout=timeout)
        new = [b for b in self.info() if b.label not in before]
        if not new:
            raise StepFailed(f"pgbackrest backup of stanza {self.config.stanza} exited 0 but info lists no new backup")
        log.info("pgbackrest.backup.done", stanza=self.config.stanza, label=new[-1].label, type=type)
        return new[-1]

    def info(self, *, timeout: float = 120) -> list[Backup]:
        return parse_info(self._info_text(timeout), self.config.stanza)

    def backup_running(self) -> bool:
        """Whether a pgBackRest process holds this stanza's backup lock right now."""
        return parse_backup_lock_held(self._info_text(), self.config.stanza)

    def describe_repo(self, repo: int) -> str:
        """Where repo N is, for a message: its path, or its S3 endpoint and bucket (no secret)."""
        r = self.config.repo2
        if repo == 2 and r is not None:
            return f"repo2 (S3 endpoint {r.endpoint}:{r.port}, bucket {r.bucket})"
        return f"repo1 ({self.config.repo1_path})" if repo == 1 else f"repo{repo}"

    def repo_problem(self, repo: int, *, timeout: float | None = None) -> str | None:
        """Why repo N cannot serve this stanza now (pgBackRest's own words), None when it can.
        ``info --repo=N`` reads that repo alone; pgBackRest 2.45's ``check`` has no ``--repo``.
        The outer deadline leaves room for pgBackRest's own retries of a stalled request, so its
        message (naming the endpoint) is what ends a dead repository, not ours."""
        timeout = timeout if timeout is not None else max(120.0, 6 * self.config.timeouts.io + 30)
        try:
            text = self._run("info", f"--repo={repo}", "--output=json", timeout=timeout).stdout
        except StepFailed as exc:
            return str(exc)
        for entry in _stanzas(text, self.config.stanza):
            for found in entry.get("repo", []):
                status = found.get("status") or {}
                if found.get("key") == repo and status.get("code") not in _REPO_OK:
                    return redact.redact(str(status.get("message") or f"status code {status.get('code')}"))
        return None

    def _info_text(self, timeout: float = 120) -> str:
        return self._run("info", "--output=json", timeout=timeout).stdout

    def wait_for_running_backup(self, *, timeout: float, poll: float = 1.0) -> None:
        """Return once no backup of this stanza is running; StepFailed after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.backup_running():
            if time.monotonic() >= deadline:
                raise StepFailed(f"a pgBackRest backup of stanza {self.config.stanza} was still running after"
                                 f" {timeout:g}s; let it finish (see {self.config.log_path}), then resume")
            time.sleep(poll)

    def restore(
        self,
        target_pgdata: str | os.PathLike[str],
        *,
        target_time: datetime | None = None,
        set_label: str | None = None,
        repo: int = 1,
        archive_mode_off: bool = True,
        extra_options: Sequence[str] = (),
        timeout: float = 3600,
    ) -> CommandResult:
        """Restore into a NEW empty directory, never over the source.

        With ``target_time``: ``--type=time --target-action=promote`` (validate the target
        with ``aep_ops.pg.target.validate_target`` first and pass its backup as ``set_label``).
        ``archive_mode_off`` writes ``archive_mode=off`` so a promoted copy cannot push a new
        timeline into the source's archive.
        """
        target = Path(target_pgdata)
        self._refuse_source(target)
        fsutil.ensure_empty_dir(target, owner=self.os_user, mode=0o700)
        options = [f"--pg1-path={target}", f"--repo={repo}"]
        if set_label:
            options.append(f"--set={set_label}")
        if target_time is not None:
            options += ["--type=time", f"--target={format_target_time(target_time)}", "--target-action=promote"]
        if archive_mode_off:
            options.append("--archive-mode=off")
        options += list(extra_options)
        result = self._run("restore", *options, timeout=timeout)
        log.info("pgbackrest.restore.done", stanza=self.config.stanza, pgdata=str(target), set=set_label,
                 target_time=target_time.isoformat() if target_time else None, seconds=round(result.duration, 2))
        return result

    def verify(self, *, repo: int | None = None, timeout: float = 3600) -> CommandResult:
        """Checks the repository's backups and WAL for missing or corrupt files."""
        result = self._run("verify", "--output=text", *([f"--repo={repo}"] if repo else []), timeout=timeout)
        # pgBackRest 2.45 exits 0 even when verify finds damage; the text report says so.
        if re.search(r"^status:\s*error", result.stdout, re.M):
            problems = "; ".join(ln.strip() for ln in result.stdout.splitlines()[2:6])
            raise VerificationFailed(f"pgbackrest verify of stanza {self.config.stanza} found damage: {problems}")
        return result

    def _refuse_source(self, target: Path) -> None:
        source = Path(os.path.realpath(self.config.pg1_path))
        resolved = Path(os.path.realpath(target))
        if resolved == source or source in resolved.parents or resolved in source.parents:
            raise UsageError(
                f"refusing to restore into {target}: it is, contains or is inside the source data directory "
                f"{source}; restore into a new directory"
            )

    def _run(self, command: str, *options: str, timeout: float) -> CommandResult:
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise ToolMissing(f"pgBackRest not found at {self.binary}: {INSTALL_HINT}")
        argv = [self.binary, f"--config={self.config.config_path}", f"--stanza={self.config.stanza}", *options, command]
        result = self.executor.run(argv, timeout=timeout, user=self.os_user, cwd="/")
        if not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
            raise StepFailed(
                f"pgbackrest {command} for stanza {self.config.stanza} failed (exit {result.exit_status}): "
                f"{redact.redact(detail[0])}; "
                f"see {self.config.log_path}"
            )
        return result


def _value(key: str, value: Any) -> str:
    text = ("y" if value else "n") if isinstance(value, bool) else str(value)
    if "\n" in text or "\r" in text:
        raise UsageError(f"pgBackRest option {key} must be one line")
    return text


def _seconds(value: float) -> str:
    return f"{value:g}"


def _epoch(value: int | float) -> datetime:
    return datetime.fromtimestamp(value, tz=timezone.utc)
