"""Files on a host through its executor, written the way a certificate or a logrotate file must be:
content on stdin (never on a command line, where ``ps`` shows it), into a temporary file beside the
target, then ``mv``: nginx or logrotate reading at any moment sees the old file or the new one,
never half of one.

Every path is an argument after ``--`` or ``"$1"``; nothing of the content or the path is ever
part of a shell string.
"""

from __future__ import annotations

from typing import Any

from aep_ops.base.errors import StepFailed

# mktemp makes the file 0600 before a byte is written; chmod gives it its mode before the rename.
WRITE = ('mkdir -p -- "$(dirname -- "$1")" && t=$(mktemp -- "$1.aep-ops.XXXXXX") &&'
         ' { cat > "$t" && chmod -- "$2" "$t" && mv -f -- "$t" "$1" || { rm -f -- "$t"; exit 1; }; }')
# Keep what the host had before a deploy, once: a resumed deploy must not back up its own new files.
BACKUP = 'for f; do if [ -e "$f" ]; then cp -p -- "$f" "$f.aep-ops-prev" || exit 1; fi; done'
RESTORE = ('for f; do if [ -e "$f.aep-ops-prev" ]; then cp -p -- "$f.aep-ops-prev" "$f.aep-ops-tmp" &&'
           ' mv -f -- "$f.aep-ops-tmp" "$f" || exit 1; fi; done')
TIMEOUT = 60


def write_file(executor: Any, path: str, content: str, mode: str = "0644") -> None:
    _ok(executor, ["sh", "-c", WRITE, "sh", path, mode], f"write {path}", input=content)


def read_file(executor: Any, path: str) -> str | None:
    """The file's text, or None when it does not exist."""
    result = executor.run(["sh", "-c", 'if [ -e "$1" ]; then cat -- "$1"; else exit 3; fi', "sh", path],
                          timeout=TIMEOUT)
    if result.exit_status == 3:
        return None
    if not result.ok:
        why = result.stderr_tail(1) or f"exit {result.exit_status}"
        raise StepFailed(f"{executor.target}: cannot read {path}: {why}")
    return result.stdout


def remove_file(executor: Any, path: str) -> None:
    _ok(executor, ["rm", "-f", "--", path], f"remove {path}")


def backup_files(executor: Any, paths: list[str]) -> None:
    _ok(executor, ["sh", "-c", BACKUP, "sh", *paths], "keep the previous files")


def restore_files(executor: Any, paths: list[str]) -> None:
    _ok(executor, ["sh", "-c", RESTORE, "sh", *paths], "put the previous files back")


def run_checked(executor: Any, argv: list[str], doing: str) -> Any:
    return _ok(executor, argv, doing)


def _ok(executor: Any, argv: list[str], doing: str, input: str | None = None) -> Any:
    result = executor.run(argv, timeout=TIMEOUT, input=input)
    if not result.ok:
        tail = " | ".join(result.stderr_tail(3).splitlines()) or f"exit {result.exit_status}"
        raise StepFailed(f"{executor.target}: {doing} failed: {tail}")
    return result
