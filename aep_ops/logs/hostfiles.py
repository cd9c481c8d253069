"""A host's rotated log files as logs.ship needs them: listed, indexed, hashed on the host, read,
and marked shipped.

Everything but the bytes goes through the host's executor as argv with the paths after ``--`` or
as ``"$1"`` (never in a shell string). The bytes come over SFTP on the same SSH connection, or
straight from disk for this machine. A file is ready when it is in its final form: compressed
when its source compresses (the newest one of a delaycompress source waits a rotation).
Marking shipped moves the file into ``shipped/`` beside it (where logrotate's count of kept files
never sees it, so it can never delete an unshipped one to make room for a shipped one) and drops
its index; ``logs.retention`` prunes ``shipped/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
from dataclasses import dataclass
from typing import IO, Any

from aep_ops.base.errors import StepFailed
from aep_ops.logs.keys import ROTATED
from aep_ops.logs.render import INDEX_DIR

TIMEOUT = 600
SHIPPED_DIR = "shipped"
# For each pattern: every rotated file (dateext names), one line "size<TAB>mtime<TAB>path".
LIST = ('IFS=""; for p; do for f in $p-[0-9]*; do [ -f "$f" ] && printf "%s\\0" "$f"; done; done |'
        ' xargs -0 -r stat --printf "%s\\t%Y\\t%n\\n" --')
LIST_GLOB = ('IFS=""; for p; do for f in $p; do [ -f "$f" ] && printf "%s\\0" "$f"; done; done |'
             ' xargs -0 -r stat --printf "%s\\t%Y\\t%n\\n" --')
# The SHA-256 of each part of $1 ($2 bytes each; $3 parts), in hex, one per line.
PARTS = ('i=0; while [ "$i" -lt "$3" ]; do tail -c +$((i * $2 + 1)) -- "$1" | head -c "$2" | sha256sum; '
         'i=$((i + 1)); done')
COUNT = ('n=$(zcat -f -- "$1" | wc -l) && echo "$n" && zcat -f -- "$1" | head -n 1 | cut -c1-4096 &&'
         ' zcat -f -- "$1" | tail -n 1 | cut -c1-4096')
MARK = ('d=$(dirname -- "$1")/shipped && mkdir -p -- "$d" && mv -f -- "$1" "$d/" &&'
        ' rm -f -- "$(dirname -- "$1")/.aep-ops-index/$(basename -- "${1%.gz}").idx"')


@dataclass(frozen=True)
class RotatedFile:
    path: str
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


@dataclass(frozen=True)
class Index:
    """What the postrotate (or a count at ship time) says of a file's lines."""

    lines: int
    first: str
    last: str


class HostFiles:
    def __init__(self, executor: Any, *, local: bool) -> None:
        self.executor, self.local = executor, local

    def rotated(self, patterns: list[str], *, compressed: bool, delayed: bool) -> tuple[list[RotatedFile], int]:
        """(the rotated files ready to ship, oldest first; how many are not final yet).

        Final: a ``.gz`` whose uncompressed twin is gone (gzip removes it only once done), or, for
        a source that does not compress, any rotated file. An uncompressed file of a compressing
        source is final once logrotate can no longer compress it: one newer rotation exists (two
        with delaycompress), as after a postrotate that failed or was killed."""
        found = self._list(LIST, patterns)
        if not compressed:
            return sorted(found, key=lambda f: (f.name, f.path)), 0
        paths = {f.path for f in found}
        rotations: dict[str, set[str]] = {}  # a log -> its rotations (the uncompressed names)
        for file in found:
            rotations.setdefault(_log_of(file.path), set()).add(file.path.removesuffix(".gz"))
        ready, waiting = [], 0
        for file in found:
            if file.path.endswith(".gz"):
                final = file.path[:-3] not in paths
            else:
                newer = sum(1 for stem in rotations[_log_of(file.path)] if stem > file.path)
                final = newer >= (2 if delayed else 1)
            if final:
                ready.append(file)
            else:
                waiting += 1
        return sorted(ready, key=lambda f: (f.name, f.path)), waiting

    def matching(self, patterns: list[str]) -> list[RotatedFile]:
        """Files matching ad-hoc globs (``--paths``), oldest first."""
        return sorted(self._list(LIST_GLOB, patterns), key=lambda f: (f.mtime, f.path))

    def index(self, file: RotatedFile) -> Index:
        """The postrotate's index of the file, else its lines counted now (slower: decompresses)."""
        stem = file.name[:-3] if file.name.endswith(".gz") else file.name
        path = posixpath.join(posixpath.dirname(file.path), INDEX_DIR, stem + ".idx")
        if self.local:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                text = ""
            parts = text.split("\n")
        else:
            result = self.executor.run(["sh", "-c", 'cat -- "$1" 2>/dev/null', "sh", path], timeout=TIMEOUT)
            parts = result.stdout.split("\n") if result.ok else []
        if len(parts) >= 3 and parts[0].strip().isdigit():
            return Index(int(parts[0].strip()), parts[1], parts[2])
        result = self._ok(["sh", "-c", COUNT, "sh", file.path], f"count the lines of {file.path}")
        count, first, last = (result.stdout.split("\n") + ["", ""])[:3]
        return Index(int(count.strip()) if count.strip().isdigit() else 0, first, last)

    def part_digests(self, file: RotatedFile, part_size: int, parts: int) -> list[bytes]:
        """SHA-256 of each part, computed on the host from the file on its disk (here: in-process)."""
        if self.local:
            return _local_digests(file.path, part_size, parts)
        script = 'sha256sum -- "$1"' if parts == 1 else PARTS
        result = self._ok(["sh", "-c", script, "sh", file.path, str(part_size), str(parts)],
                          f"hash {file.path}")
        digests = [bytes.fromhex(line.split()[0]) for line in result.stdout.splitlines() if line.strip()]
        if len(digests) != parts:
            raise StepFailed(f"{self.executor.target}: hashing {file.path} gave {len(digests)} parts, not {parts}")
        return digests

    def open(self, file: RotatedFile) -> IO[bytes]:
        if self.local:
            return open(file.path, "rb")
        try:
            sftp = self.executor.open_sftp()
        except Exception as exc:  # paramiko: "Channel closed." when sshd has no sftp subsystem
            raise StepFailed(f"{self.executor.target}: cannot open SFTP ({exc}): logs.ship reads rotated files over"
                             " SFTP; enable sshd's `Subsystem sftp` on the host") from exc
        try:
            return _fetched(sftp, file)
        finally:
            sftp.close()

    def mark_shipped(self, file: RotatedFile) -> None:
        if not self.local:
            self._ok(["sh", "-c", MARK, "sh", file.path], f"move {file.path} into shipped/")
            return
        directory = os.path.dirname(file.path)
        os.makedirs(os.path.join(directory, SHIPPED_DIR), exist_ok=True)
        os.replace(file.path, os.path.join(directory, SHIPPED_DIR, file.name))
        stem = file.name[:-3] if file.name.endswith(".gz") else file.name
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, INDEX_DIR, stem + ".idx"))

    def _list(self, script: str, patterns: list[str]) -> list[RotatedFile]:
        result = self._ok(["sh", "-c", script, "sh", *patterns], "list the rotated files")
        out = []
        for line in result.stdout.splitlines():
            size, mtime, path = line.split("\t", 2)
            out.append(RotatedFile(path, int(size), float(mtime)))
        return out

    def _ok(self, argv: list[str], doing: str) -> Any:
        result = self.executor.run(argv, timeout=TIMEOUT)
        if not result.ok:
            raise StepFailed(f"{self.executor.target}: {doing} failed: {result.stderr_tail(2) or result.exit_status}")
        return result


def _log_of(path: str) -> str:
    """The live log a rotated file came from (its path without the dateext suffix)."""
    match = ROTATED.search(path)
    return path[:match.start()] if match else path


def _local_digests(path: str, part_size: int, parts: int) -> list[bytes]:
    digests = []
    with open(path, "rb") as f:
        for _ in range(parts):
            digest, left = hashlib.sha256(), part_size
            while left > 0 and (chunk := f.read(min(left, 1 << 20))):
                digest.update(chunk)
                left -= len(chunk)
            digests.append(digest.digest())
    return digests


def _fetched(sftp: Any, file: RotatedFile) -> IO[bytes]:
    """The remote file copied into an unnamed local temporary file (gone when closed), read ahead
    in parallel by paramiko. Uploading straight from the SFTP handle is ten times slower: botocore
    reads a body twice (checksum, then send) and a seek back drops paramiko's read-ahead."""
    import tempfile

    local = tempfile.TemporaryFile(prefix="aep-ops-ship-")
    try:
        with sftp.open(file.path, "rb") as remote:
            remote.prefetch(file.size)
            while chunk := remote.read(1 << 20):
                local.write(chunk)
        local.seek(0)
    except BaseException:
        local.close()
        raise
    return local
