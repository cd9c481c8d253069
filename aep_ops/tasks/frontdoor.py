"""What every CLI task shares: load settings, configure logs, map errors to exit codes.

Exit codes (documented in the README) are decided here and nowhere else:
0 success or nothing to do, 1 a step failed, 2 bad input or configuration,
3 locked by another run, 4 approval required, 5 finished but verification failed.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from aep_ops.base.errors import (AepError, ApprovalRequired, ConfigError, LockedError, SecretError, ToolMissing,
                            UsageError, VerificationFailed, refuse_blank)
from aep_ops.base.redact import dumps, redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_APPROVAL = 4
EXIT_VERIFICATION = 5

RUN_STATUS_EXIT = {
    "planned": EXIT_OK,
    "succeeded": EXIT_OK,
    "failed": EXIT_FAILED,
    "interrupted": EXIT_FAILED,
    "verification_failed": EXIT_VERIFICATION,
}


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, (UsageError, ConfigError)):
        return EXIT_USAGE
    if isinstance(exc, LockedError):
        return EXIT_LOCKED
    if isinstance(exc, ApprovalRequired):
        return EXIT_APPROVAL
    if isinstance(exc, VerificationFailed):
        return EXIT_VERIFICATION
    if isinstance(exc, (ToolMissing, SecretError)):
        return EXIT_USAGE
    return EXIT_FAILED


@contextmanager
def front_door() -> Iterator[None]:
    """Turn errors into one line on stderr and an exit code; never a traceback for the user's mistakes."""
    from invoke.exceptions import Exit

    _skip_final_gc()
    try:
        yield
        sys.stdout.flush()  # a reader that left (`| head`) shows here, not at interpreter exit
    except Exit:
        raise
    except BrokenPipeError:  # `inv runs.list | head -1`: the reader has what it wanted
        stdout_gone()
        raise Exit(code=EXIT_OK) from None
    except AepError as exc:
        from aep_ops.base.textfmt import flat  # one whole line, a multi-line PostgreSQL error included

        raise Exit(f"error: {flat(redact(str(exc)))}", code=exit_code_for(exc)) from None
    except KeyboardInterrupt:
        raise Exit("interrupted", code=EXIT_FAILED) from None
    except Exception as exc:  # a bug: the details go to the log file, one line to the user
        from aep_ops.base.log import get_logger

        get_logger("aep_ops.cli").exception("internal_error")
        raise Exit(f"internal error: {type(exc).__name__}: {redact(str(exc))}"
                   " (details in the log file under STATE_DIR/logs/aep-ops.jsonl)", code=EXIT_FAILED) from None
    except BaseException as exc:  # SystemExit passes; the runner's Interrupted (SIGTERM) is one line
        from aep_ops.engine.runner import Interrupted

        if isinstance(exc, Interrupted):
            raise Exit(f"error: {exc}", code=EXIT_FAILED) from None
        raise


def stdout_gone() -> None:
    """Point stdout at /dev/null once its reader has left, so that nothing more (the final flush
    at exit included) can fail on it."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _skip_final_gc() -> None:
    """At interpreter exit, freeze the heap instead of letting the final garbage collections
    walk it: with invoke, psycopg, structlog (and paramiko) loaded that walk costs 45-100 ms
    of every task (bench/drill.py, bench/fanout.py). Only cyclic garbage is affected: the
    process is ending, and refcounted objects, open files and logging handlers still close."""
    import atexit
    import gc

    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)  # registered last, so it runs first among the exit hooks


def load_settings(env: str | None, overrides: list[str] | None = None):  # -> aep_ops.config.Settings
    """Settings for this invocation, with logging configured for its state directory."""
    from aep_ops import config
    from aep_ops.base import log

    refuse_blank("--env", env, "name an environment (see `inv config.show`), or leave the flag out for 'local'")
    settings = config.load(env, overrides or [])
    try:
        log.configure(settings.state_dir, level=settings.get("log.level", "info"))
    except OSError as exc:
        raise ConfigError(f"state_dir {settings.state_dir}: cannot write logs there ({exc.strerror});"
                          " set state_dir or AEP_OPS_STATE_DIR to a writable directory") from None
    return settings


def print_json(data: object) -> None:
    print(dumps(data, indent=2, sort_keys=True), file=sys.stdout)


def write_json(path: str, data: object) -> None:
    """Write JSON to a file the user named (atomically: a reader never sees half of it, and a
    failed write leaves nothing behind)."""
    import os
    import tempfile

    target = check_output_path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps(data, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        raise UsageError(f"--json-file {path}: cannot write it ({exc.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_output_path(path: str, flag: str = "--json-file",
                      instead: str = "give --json alone for stdout"):  # -> pathlib.Path
    """The file ``flag`` names (--json-file, metrics.rules --out), checked before any work is done:
    exit 2 then means that nothing was changed, instead of a whole run followed by "cannot write it"."""
    import os
    from pathlib import Path

    if not str(path).strip():
        raise UsageError(f"{flag} is empty: name a file to write, or {instead}")
    if "\0" in str(path):
        raise UsageError(f"{flag}: the path contains a NUL byte")
    target = Path(os.path.expanduser(str(path)))
    if target.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; name a file in it")
    parent = target.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"{flag} {path}: permission denied; choose a file you can write")
    return target
