"""Control of one local PostgreSQL cluster: initdb, configuration, start/stop, recovery wait.

The server runs as the ``postgres`` OS user (initdb and postgres refuse root); aep-ops
runs its tools through runuser. Settings live in ``conf.d/aep-ops.conf`` (included from
postgresql.conf) so that re-running ``configure`` is a no-op when nothing changed. The
server log is kept next to the data directory, not inside it, so that a restored copy
does not carry the source's log and recovery messages are read from this run only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from aep_ops.base import netports
from aep_ops.base.errors import CommandTimeout, ExecutionError, StepFailed, UsageError, VerificationFailed
from aep_ops.executors.base import CommandResult
from aep_ops.executors.local import LocalExecutor
from aep_ops.base.log import get_logger
from aep_ops.pg import facts, fsutil
from aep_ops.pg.bin import pg_bin

if TYPE_CHECKING:
    import psycopg

log = get_logger(__name__)

CONF_DIR = "conf.d"
CONF_FILE = "aep-ops.conf"
INCLUDE_LINE = f"include_dir = '{CONF_DIR}'\t# added by aep-ops"
RECOVERY_FATAL = "recovery ended before configured recovery target was reached"
_STOP_RE = re.compile(r"recovery stopping (?:before|after) .*")
_LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \w+ \[\d+\] ")
_ARCHIVE_KEYS = ("archive_mode", "archive_command", "archive_library")
_SETTING_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*'((?:[^'\\]|''|\\.)*)'\s*$")


@dataclass(frozen=True)
class PromotionFacts:
    """What a finished point-in-time recovery reports about itself."""

    stop_line: str | None
    timeline: int
    last_replayed_commit: datetime | None
    archive_mode: str
    seconds: float


class LocalCluster:
    """One PostgreSQL cluster on this machine, listening on 127.0.0.1:port and a socket dir."""

    def __init__(
        self,
        datadir: str | os.PathLike[str],
        port: int,
        socket_dir: str | os.PathLike[str],
        os_user: str = "postgres",
        bindir: str | os.PathLike[str] | None = None,
        *,
        logfile: str | os.PathLike[str] | None = None,
        listen: str = "127.0.0.1",
        executor: LocalExecutor | None = None,
    ) -> None:
        self.datadir = Path(datadir)
        self.port = int(port)
        self.socket_dir = Path(socket_dir)
        self.os_user = os_user
        self.bindir = bindir
        self.logfile = Path(logfile) if logfile else self.datadir.with_name(self.datadir.name + ".log")
        self.listen = listen
        self.executor = executor or LocalExecutor()
        self._log_offset = 0

    def __repr__(self) -> str:
        return f"LocalCluster({str(self.datadir)!r}, port={self.port})"

    def exists(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def is_running(self) -> bool:
        """``pg_ctl status``: 0 running, 3 not running, 4 no data directory."""
        result = self._pg_ctl("status", timeout=30)
        return result.exit_status == 0

    def postmaster_pid(self) -> int | None:
        """PID from postmaster.pid if that process is alive, else None (cheap: no subprocess)."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def pm_status(self) -> str | None:
        """The postmaster's state as it writes it in postmaster.pid (line 8, what ``pg_ctl -w``
        reads): "starting", "standby" (a hot standby accepting connections), "ready" (a primary:
        normal operation, so after a recovery, promoted), "stopping"; None when the line is absent."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().split("\n")
        except OSError:
            return None
        return lines[7].strip() or None if len(lines) > 7 else None

    def dsn(self, dbname: str = "postgres", *, user: str | None = None) -> str:
        """libpq connection string over the unix socket (trust auth, reachable by root and postgres)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(host=str(self.socket_dir), port=self.port, dbname=dbname, user=user or self.os_user)

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        from aep_ops.pg.connect import connect

        return connect(self.dsn(dbname), **kwargs)

    def init(
        self, settings: Mapping[str, Any] | None = None, *, sync: bool = True, data_checksums: bool = True
    ) -> bool:
        """initdb once (as the OS user, data dir 0700), then ``configure``. Returns whether anything changed."""
        changed = False
        if not self.exists():
            if self.datadir.exists() and any(self.datadir.iterdir()):
                raise UsageError(
                    f"{self.datadir} is not empty and holds no PostgreSQL cluster; refusing to initdb there"
                )
            fsutil.check_traversable(self.datadir, self.os_user)
            fsutil.ensure_dir(self.datadir, owner=self.os_user, mode=0o700)
            argv = [
                pg_bin("initdb", self.bindir), "-D", str(self.datadir), "-U", self.os_user,
                "--encoding=UTF8", "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                "--no-instructions",
            ]
            argv += ["--data-checksums"] if data_checksums else []
            argv += [] if sync else ["--no-sync"]
            result = self.executor.run(argv, timeout=300, user=self.os_user, cwd="/")
            if not result.ok:
                raise StepFailed(f"initdb of {self.datadir} failed: {result.describe()}")
            log.info("pg.cluster.initdb.done", datadir=str(self.datadir), seconds=round(result.duration, 2))
            changed = True
        return self.configure(settings) or changed

    def configure(self, settings: Mapping[str, Any] | None = None) -> bool:
        """Make ``conf.d/aep-ops.conf`` hold exactly the managed settings plus ``settings``.

        port, listen_addresses, unix_socket_directories and logging (one log file, UTC) are
        managed here and win over ``settings``. Takes effect at the next (re)start.
        """
        fsutil.ensure_dir(self.socket_dir, owner=self.os_user, mode=0o700)
        desired = {str(k): _conf_value(v) for k, v in (settings or {}).items()}
        desired.update(self._managed())
        changed = self._ensure_include()
        text = "# Written by aep-ops; changes are overwritten.\n" + "".join(
            f"{k} = {_quote(v)}\n" for k, v in sorted(desired.items())
        )
        conf = self.datadir / CONF_DIR / CONF_FILE
        changed = fsutil.write_file(conf, text, mode=0o600, owner=self.os_user) or changed
        if changed:
            log.info("pg.cluster.configured", datadir=str(self.datadir), keys=sorted(desired))
        return changed

    def current_settings(self) -> dict[str, str]:
        """The settings in conf.d/aep-ops.conf (what ``configure`` last wrote)."""
        return _read_settings(self.datadir / CONF_DIR / CONF_FILE)

    def disable_archiving(self) -> bool:
        """Turn archiving off for good on a restored copy.

        The copy inherits ``archive_command`` from the source, also through
        postgresql.auto.conf (read last, so it would win over conf.d): drop archive_* lines
        there and set ``archive_mode=off`` and an empty ``archive_command`` in conf.d.
        """
        merged = {**self.current_settings(), "archive_mode": "off", "archive_command": ""}
        for key in _ARCHIVE_KEYS[2:]:
            merged.pop(key, None)
        changed = self.configure(merged)
        auto = self.datadir / "postgresql.auto.conf"
        if auto.exists():
            lines = auto.read_text().splitlines(keepends=True)
            kept = [ln for ln in lines if _setting_name(ln) not in _ARCHIVE_KEYS]
            if kept != lines:
                fsutil.write_file(auto, "".join(kept), mode=0o600, owner=self.os_user)
                changed = True
        return changed

    def start(self, *, timeout: float = 60, wait: bool = True) -> bool:
        """``pg_ctl start``; False if already running. A 0 exit does NOT mean recovery succeeded.

        ``wait=False`` (for restores) returns once the postmaster is up: recovery may take
        longer than any pg_ctl timeout, and ``wait_for_promotion`` is what waits for it.
        """
        if self.postmaster_pid() is not None and self.is_running():
            return False
        fsutil.ensure_dir(self.socket_dir, owner=self.os_user, mode=0o700)
        fsutil.ensure_file(self.logfile, owner=self.os_user, mode=0o640)
        self._log_offset = self.logfile.stat().st_size
        flags = ["-w", "-t", str(int(timeout))] if wait else ["-W"]
        result = self._pg_ctl("start", "-l", str(self.logfile), *flags, timeout=timeout + 15)
        if result.ok and not wait:
            result = self._await_postmaster(result, timeout)
        if not result.ok:
            lines = self.new_log_lines()
            if any(RECOVERY_FATAL in ln for ln in lines):
                raise VerificationFailed(self._unreachable_message(lines))
            why = _worst_line(lines) or result.stderr_tail(1)
            if netports.port_taken(why):
                why += (f" (port {self.port} on {self.listen} is in use by another program;"
                        f" `ss -ltnp 'sport = :{self.port}'` names it)")
            raise StepFailed(f"PostgreSQL at {self.datadir} did not start (pg_ctl exit {result.exit_status}): "
                             f"{why}; log: {self.logfile}")
        log.info("pg.cluster.started", datadir=str(self.datadir), port=self.port, seconds=round(result.duration, 2))
        return True

    def stop(self, *, mode: str = "fast", timeout: float = 60) -> bool:
        """``pg_ctl -m MODE stop``; False if it was not running.

        pg_ctl's own wait (-w) polls every 100 ms; a drill stops a copy on its measured path,
        so pg_ctl only signals (-W) and we watch postmaster.pid go away every 10 ms.
        """
        if self.postmaster_pid() is None:
            return False
        result = self._pg_ctl("stop", "-m", mode, "-W", timeout=30)
        deadline = time.monotonic() + timeout
        while result.ok and self.postmaster_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.postmaster_pid() is not None:
            why = result.describe() if not result.ok else f"still running {timeout:g}s after a {mode} shutdown request"
            raise StepFailed(f"PostgreSQL at {self.datadir} did not stop: {why}")
        log.info("pg.cluster.stopped", datadir=str(self.datadir), mode=mode)
        return True

    def new_log_lines(self) -> list[str]:
        """Server log lines written since the last ``start()`` (or since the last call)."""
        try:
            with open(self.logfile, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._log_offset += len(complete)
        return complete.decode("utf-8", "replace").splitlines()

    def wait_for_promotion(
        self, *, timeout: float = 300, poll: float = 0.2, expect_target: bool = True
    ) -> PromotionFacts:
        """Wait until recovery ended AND the server is a primary, or fail loudly.

        ``pg_ctl -w start`` returns as soon as a hot standby accepts connections; the
        server can still die later with "recovery ended before configured recovery target
        was reached". So: poll ``pg_is_in_recovery()``, check the postmaster is alive, and
        read the log for "recovery stopping before/after ..." (the proof a target was hit).
        Connections are attempted only once postmaster.pid says "ready" (see ``pm_status``).
        """
        started = time.monotonic()
        deadline = started + timeout
        seen: list[str] = []
        stop_line: str | None = None
        conn = None
        try:
            while True:
                for line in self.new_log_lines():
                    seen.append(line)
                    if RECOVERY_FATAL in line:
                        raise self._recovery_failed(seen)
                    if "pausing at the end of recovery" in line:
                        raise VerificationFailed(
                            f"recovery at {self.datadir} reached its target and paused instead of promoting "
                            "(recovery_target_action=pause); check the data, then select pg_wal_replay_resume()"
                        )
                    match = _STOP_RE.search(line)
                    stop_line = match.group(0) if match else stop_line
                if self.postmaster_pid() is None:
                    seen += self.new_log_lines()
                    if any(RECOVERY_FATAL in ln for ln in seen):
                        raise VerificationFailed(self._unreachable_message(seen))
                    raise VerificationFailed(
                        f"PostgreSQL at {self.datadir} exited during recovery: {_worst_line(seen) or 'no log output'}; "
                        f"log: {self.logfile}"
                    )
                if conn is None or conn.closed:
                    # Connect once the postmaster says it runs as a primary: polling with connection
                    # attempts would fork a backend per attempt while recovery needs the CPU.
                    conn = self._try_connect() if self.pm_status() in ("ready", None) else None
                if conn is not None and not self._in_recovery(conn):
                    for line in self.new_log_lines():
                        match = _STOP_RE.search(line)
                        stop_line = match.group(0) if match else stop_line
                    if expect_target and stop_line is None:
                        raise VerificationFailed(
                            f"PostgreSQL at {self.datadir} was promoted but never logged "
                            "'recovery stopping before/after': "
                            "the recovery target was not applied (is recovery_target_* set?)"
                        )
                    result = PromotionFacts(
                        stop_line=stop_line,
                        timeline=facts.timeline(conn),
                        last_replayed_commit=facts.last_replayed_commit(conn),
                        archive_mode=facts.setting(conn, "archive_mode"),
                        seconds=time.monotonic() - started,
                    )
                    log.info("pg.recovery.promoted", datadir=str(self.datadir), timeline=result.timeline,
                             stop=stop_line, seconds=round(result.seconds, 2))
                    return result
                if time.monotonic() > deadline:
                    raise CommandTimeout(
                        f"PostgreSQL at {self.datadir} still in recovery after {timeout:g}s; "
                        f"last log line: {seen[-1] if seen else 'none'}; log: {self.logfile}"
                    )
                time.sleep(poll)
        finally:
            if conn is not None:
                conn.close()

    def _managed(self) -> dict[str, str]:
        return {
            "port": str(self.port),
            "listen_addresses": self.listen,
            "unix_socket_directories": str(self.socket_dir),
            "logging_collector": "off",
            "log_timezone": "UTC",
        }

    def _ensure_include(self) -> bool:
        conf = self.datadir / "postgresql.conf"
        text = conf.read_text()
        if re.search(rf"^\s*include_dir\s*=\s*'{CONF_DIR}'", text, re.M):
            return False
        fsutil.write_file(conf, text.rstrip("\n") + "\n" + INCLUDE_LINE + "\n", mode=0o600, owner=self.os_user)
        return True

    def _pg_ctl(self, *args: str, timeout: float) -> CommandResult:
        return self.executor.run([pg_bin("pg_ctl", self.bindir), "-D", str(self.datadir), *args],
                                 timeout=timeout, user=self.os_user, cwd="/")

    def _await_postmaster(self, result: CommandResult, timeout: float) -> CommandResult:
        """After ``pg_ctl start -W``: wait until the postmaster reports a status in postmaster.pid,
        or report the start as failed. The file appears before the listen sockets exist; the status
        line only after them, so a port taken meanwhile fails here ("could not create any TCP/IP
        sockets"), not later as a server that vanished during recovery."""
        deadline = time.monotonic() + timeout
        while self.pm_status() is None:
            if time.monotonic() > deadline or any(
                level in ln for ln in self._peek_log() for level in ("FATAL:", "PANIC:", "database system is shut down")
            ):
                return dataclasses.replace(result, exit_status=1)
            time.sleep(0.01)
        return result

    def _peek_log(self) -> list[str]:
        offset = self._log_offset
        try:
            return self.new_log_lines()
        finally:
            self._log_offset = offset

    def _try_connect(self):
        try:
            return self.connect(connect_timeout=2, statement_timeout_ms=10_000)
        except ExecutionError:
            return None

    def _in_recovery(self, conn) -> bool:
        try:
            return facts.is_in_recovery(conn)
        except ExecutionError:
            conn.close()
            return True

    def _recovery_failed(self, seen: list[str], grace: float = 10) -> VerificationFailed:
        """The startup process logged that the target cannot be reached, and PostgreSQL shuts down
        next: wait (bounded) until it has, so that a caller who sees the failure finds a stopped
        server, not one half-way out that still holds its port and files."""
        deadline = time.monotonic() + grace
        while self.postmaster_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        return VerificationFailed(self._unreachable_message(seen))

    def _unreachable_message(self, lines: list[str]) -> str:
        reached = []
        for line in lines:
            for pattern in (r"redo done at (\S+)", r"last completed transaction was at log time (.+)$"):
                match = re.search(pattern, line)
                if match:
                    reached.append(match.group(1))
        return (
            f"point-in-time recovery at {self.datadir} failed: the archive does not reach the recovery target "
            f"(PostgreSQL: '{RECOVERY_FATAL}'"
            + (f"; replayed up to {', '.join(reached)}" if reached else "")
            + "); switch WAL on the source (select pg_switch_wal()) or pick an earlier target"
        )


def _worst_line(lines: list[str]) -> str | None:
    """The most severe log line, with the line before it (PostgreSQL logs the cause first)."""
    for level in ("PANIC:", "FATAL:", "ERROR:"):
        index = next((i for i in range(len(lines) - 1, -1, -1) if level in lines[i]), None)
        if index is not None:
            return " / ".join(_LOG_PREFIX.sub("", ln).strip() for ln in lines[max(index - 1, 0): index + 1])
    return _LOG_PREFIX.sub("", lines[-1]).strip() if lines else None


def _conf_value(value: Any) -> str:
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def _quote(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise UsageError("PostgreSQL setting values must be one line")
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _setting_name(line: str) -> str | None:
    match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=", line)
    return match.group(1).lower() if match else None


def _read_settings(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        match = _SETTING_RE.match(line)
        if match:
            out[match.group(1)] = re.sub(r"''|\\(.)", lambda m: m.group(1) or "'", match.group(2))
    return out
