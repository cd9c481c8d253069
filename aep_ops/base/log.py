"""The only structlog configuration, the audit log, and the run context.

- JSON lines always go to ``STATE_DIR/logs/aep-ops.jsonl``; stderr gets JSON lines off a
  TTY and readable console output on one (warnings and errors only: the engine prints
  step progress for humans).
- stdlib logging (paramiko, botocore, urllib3) goes through the same processor chain.
- Every event carries run_id, runbook, step, env and actor (contextvars).
- Every string is passed through ``aep_ops.base.redact`` last, so no resolved secret value
  can leave in a log line, whatever key it sits under.

``get_logger`` is lazy: importing structlog costs ~0.1 s, and listing tasks must not pay it.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aep_ops.base.redact import dumps, redact_obj

CONTEXT_KEYS = ("run_id", "runbook", "step", "env", "actor")
_configured: tuple | None = None
_lock = threading.Lock()


def os_user() -> str:
    """Who the operating system says runs this process (effective uid), whatever AEP_OPS_ACTOR
    or USER claim: the audit log records both, so a claimed actor can be checked."""
    import pwd

    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:  # a uid with no passwd entry (containers)
        return f"uid {uid}"


def default_actor() -> str:
    """Who is acting: a chat user when the chat front door sets AEP_OPS_ACTOR, else user@host."""
    return os.environ.get("AEP_OPS_ACTOR") or f"{getpass.getuser()}@{socket.gethostname()}"


class _LazyLogger:
    """Stands in for ``structlog.get_logger()`` until first use."""

    def __init__(self, name: str | None) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attr)


def get_logger(name: str | None = None) -> Any:
    return _LazyLogger(name)


def bind(**values: Any) -> None:
    import structlog

    structlog.contextvars.bind_contextvars(**values)


def unbind(*keys: str) -> None:
    import structlog

    structlog.contextvars.unbind_contextvars(*keys)


def context() -> dict[str, Any]:
    import structlog

    return structlog.contextvars.get_contextvars()


def configure(state_dir: Path, *, level: str = "info", stream: Any = None, tty: bool | None = None) -> Path:
    """Configure logging once per process (again only if the state dir or level changes)."""
    global _configured
    import structlog

    stream = stream or sys.stderr
    tty = stream.isatty() if tty is None else tty
    log_file = Path(state_dir) / "logs" / "aep-ops.jsonl"
    key = (str(log_file), level, tty, id(stream))
    with _lock:
        if _configured == key:
            return log_file
        log_file.parent.mkdir(parents=True, exist_ok=True)
        shared = [
            structlog.contextvars.merge_contextvars,
            _ensure_context_keys,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_event,
        ]
        structlog.configure(
            processors=[structlog.stdlib.filter_by_level, *shared,
                        structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=False,
        )
        json_renderer = structlog.processors.JSONRenderer(default=str)
        file_handler = LineFileHandler(log_file)
        file_handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, json_renderer],
            foreign_pre_chain=shared))
        stream_handler = logging.StreamHandler(stream)
        console = structlog.dev.ConsoleRenderer(colors=False) if tty else json_renderer
        stream_handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, console],
            foreign_pre_chain=shared))
        stream_handler.setLevel(logging.WARNING if tty else _level(level))
        if tty:
            stream_handler.addFilter(_not_said_on_terminal)
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_aep_ops", False):
                root.removeHandler(handler)
                handler.close()
        for handler in (file_handler, stream_handler):
            handler._aep_ops = True  # type: ignore[attr-defined]
            root.addHandler(handler)
        root.setLevel(_level(level))
        for chatty in ("paramiko", "botocore", "boto3", "urllib3", "s3transfer", "matplotlib"):
            logging.getLogger(chatty).setLevel(max(_level(level), logging.WARNING))
        transport = logging.getLogger("paramiko.transport")
        if not any(isinstance(f, _TransportThreadErrors) for f in transport.filters):
            transport.addFilter(_TransportThreadErrors())
        _configured = key
    return log_file


class _TransportThreadErrors(logging.Filter):
    """Drops the ERROR records of paramiko's transport thread: it logs a traceback, one record per
    line, for every failed handshake (a host that never sends its banner, a connect aborted at a
    deadline), while the caller gets the same failure as an exception and reports it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


class LineFileHandler(logging.Handler):
    """Appends each record as one whole line, with one ``write`` on an O_APPEND descriptor:
    concurrent writers never interleave, and a write the disk cannot take is cut back, so a
    full disk leaves no half line for a log shipper to choke on. A failure to write is said
    once, in one line on stderr (not logging's traceback per record); the run goes on: the
    journal, not this file, is the record of what ran."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._failed = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "replace")
            with self.lock:
                self._append(data)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                print(f"aep-ops: cannot write the log file {self.path} ({exc.strerror or exc});"
                      " records are not kept there until it can be written", file=sys.stderr)
        except Exception:  # a formatting bug must not stop a run
            self.handleError(record)

    def _append(self, data: bytes) -> None:
        append_whole(self._fd, data)
        self._failed = False

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass
        super().close()


def append_whole(fd: int, data: bytes) -> None:
    """One ``write`` of a whole line on an O_APPEND descriptor; a partial write (the disk
    filled up mid-line) is cut back off the file and raised as ENOSPC."""
    written = os.write(fd, data)
    if written < len(data):
        size = os.fstat(fd).st_size
        os.ftruncate(fd, max(0, size - written))
        raise OSError(28, "No space left on device (the partial line was removed)")


# Events a person on a terminal already reads in the run's own words (a step's failure in the
# result, a crash as "internal error", a taken-over lock as a "note:" line, a reaped copy as a
# progress line): the terminal's console lines leave them out so nothing is said twice. The log
# file keeps them, and so does stderr off a terminal, where every event is a JSON line.
SAID_ON_TERMINAL = frozenset({"step.failed", "step.crash", "internal_error", "lock.stale_taken_over",
                              "step.interrupted.cleanup_failed", "dr.scratch.reaped"})


def _not_said_on_terminal(record: logging.LogRecord) -> bool:
    event = record.msg.get("event") if isinstance(record.msg, dict) else None
    return event not in SAID_ON_TERMINAL


def _level(name: str) -> int:
    return getattr(logging, name.upper(), logging.INFO)


def _ensure_context_keys(_logger: Any, _name: str, event: dict) -> dict:
    for key in CONTEXT_KEYS:
        event.setdefault(key, None)
    if event["actor"] is None:
        event["actor"] = default_actor()
    return event


def _redact_event(_logger: Any, _name: str, event: dict) -> dict:
    return redact_obj(event)


def audit(state_dir: Path, action: str, *, target: str, args: dict | None = None,
          result: str, **extra: Any) -> dict:
    """Append one record to the audit log: who did what, where, with which arguments, and how it ended.

    One ``write`` on an O_APPEND descriptor keeps concurrent writers from interleaving.
    """
    ctx = {}
    try:
        ctx = context()
    except ImportError:  # pragma: no cover - structlog is a hard dependency
        pass
    record = {
        "ts": datetime.now(timezone.utc).isoformat(),
        "actor": ctx.get("actor") or default_actor(),
        "os_user": os_user(),
        "action": action,
        "target": target,
        "env": ctx.get("env"),
        "runbook": ctx.get("runbook"),
        "run_id": ctx.get("run_id"),
        "step": ctx.get("step"),
        "args": _mask_args(args or {}),
        "result": result,
        **extra,
    }
    line = dumps(record, sort_keys=True) + "\n"
    path = Path(state_dir) / "logs" / "audit.jsonl"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            append_whole(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        from aep_ops.base.errors import StateUnwritable

        raise StateUnwritable(f"cannot write the audit log {path} ({exc.strerror or exc}); free space under"
                              f" {path.parent} or make it writable, then run again") from None
    get_logger("aep_ops.audit").info("audit", action=action, target=target, result=result)
    return record


_SENSITIVE = ("password", "passwd", "secret", "token", "key", "passphrase", "dsn", "credential")


def _mask_args(args: dict) -> dict:
    """Belt and braces: values under sensitive-looking names are masked even if never resolved."""
    masked = {}
    for name, value in args.items():
        if any(s in name.lower() for s in _SENSITIVE) and value is not None and not str(value).startswith("<secret"):
            masked[name] = "****"
        else:
            masked[name] = value if isinstance(value, (int, float, bool, type(None))) else str(value)
    return masked
