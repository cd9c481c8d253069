"""Ship one rotated file to S3 exactly once, and the files of every host of a run.

Per file: its index (lines, first and last line), its SHA-256 computed on its host with the part
size the upload will use, a create-only upload, then a HEAD with checksum mode. Only when S3's
size and SHA-256 equal the file's is it recorded in the manifest and moved into ``shipped/``.
A key that already holds an object (an earlier run shipped it, then was killed) is compared the
same way, with that object's own part size; an object that differs is replaced only when it is
ours (its ``aep-sha256`` metadata is this file's), else the file stays and the run names it.
"""

from __future__ import annotations

import fnmatch
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from aep_ops.base.errors import StepFailed
from aep_ops.logs import checksums, s3put
from aep_ops.logs.hostfiles import HostFiles, RotatedFile
from aep_ops.logs.keys import object_key
from aep_ops.logs.linetime import iso, line_time
from aep_ops.logs.manifest import Manifest
from aep_ops.logs.settings import Source
from aep_ops.logs.targets import LogHost

ATTEMPTS = 3
TRANSIENT = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "RequestTimeout", "InternalError"}


@dataclass(frozen=True)
class Job:
    host: LogHost
    source: Source
    files: HostFiles
    file: RotatedFile
    key: str


def find_jobs(env: str, prefix: str, host: LogHost, files: HostFiles, host_sources: list[Source],
              paths_filter: str | None) -> tuple[list[Job], int]:
    """(the host's files ready to ship, how many rotated files wait for their compression)."""
    jobs, waiting = [], 0
    for source in host_sources:
        ready, pending = files.rotated(source.paths_on(host.name), compressed=source.compress,
                                       delayed=source.delay_compress)
        waiting += pending
        for file in ready:
            if paths_filter is None or fnmatch.fnmatch(file.path, paths_filter):
                key = object_key(prefix, env, source.key_role, host.name, file.name, file.mtime)
                jobs.append(Job(host, source, files, file, key))
    return jobs, waiting


def ship_one(transfer: s3put.Transfer, job: Job, manifest: Manifest, lock: dict[str, Any] | None) -> dict[str, Any]:
    """Ship, verify, record, mark. Returns the manifest entry plus ``outcome`` (shipped/already)."""
    file = job.file
    index = job.files.index(file)
    parts = _parts(transfer, file.size)
    checksum = checksums.composite(job.files.part_digests(file, parts[0], parts[1]))
    first, last = line_time(index.first), line_time(index.last)
    extra = _extra(job, checksum, index.lines, first, last, lock)
    outcome = None
    for attempt in range(1, ATTEMPTS + 1):
        created = _upload(transfer, job, checksum, extra, attempt)
        if created is None:
            continue  # the body was refused in transit (BadDigest): send it again
        head = s3put.head(transfer, job.key)
        if head is None:
            raise StepFailed(f"{job.key}: S3 answered the upload but HEAD finds no object")
        why = _differs(transfer, job, head, checksum, parts)
        if why is None:
            outcome = "shipped" if created else "already in S3"
            break
        ours = created or (head.get("Metadata") or {}).get("aep-sha256") == checksum
        if not ours:
            raise StepFailed(f"s3://{transfer.bucket}/{job.key} already holds another object ({why}); {file.path}"
                             f" stays on {job.host.name}: look at that object, then delete it or move the file")
        s3put.delete(transfer, job.key)  # our own upload, stored wrong: replace it
    if outcome is None:
        raise StepFailed(f"{file.path} on {job.host.name}: S3 does not hold it intact after {ATTEMPTS} uploads;"
                         " the file stays and the next run tries again")
    entry = {"key": job.key, "bucket": transfer.bucket, "host": job.host.name, "source": job.source.name,
             "path": file.path, "size": file.size, "sha256": checksum, "parts": parts[1], "lines": index.lines,
             "first": iso(first), "last": iso(last), "shipped_at": iso(time.time())}
    manifest.record(entry)
    job.files.mark_shipped(file)
    return {**entry, "outcome": outcome}


def _parts(transfer: s3put.Transfer, size: int) -> tuple[int, int]:
    """(part size, number of parts) of the upload s3transfer will make for ``size`` bytes."""
    if size < transfer.threshold:
        return max(size, 1), 1
    part = checksums.part_size_for(size, transfer.part_size)
    return part, -(-size // part)


def _differs(transfer: s3put.Transfer, job: Job, head: dict[str, Any], checksum: str,
             parts: tuple[int, int]) -> str | None:
    """Why the object is not the file, or None. An object made with other parts is compared with
    the file hashed in *its* part size (read from its first part)."""
    _, stored_parts = checksums.stored(head)
    if stored_parts != parts[1] and int(head.get("ContentLength", -1)) == job.file.size:
        if stored_parts > 1:
            first = s3put.head(transfer, job.key, part_number=1) or {}
            size = int(first.get("ContentLength") or job.file.size)
        else:
            size = job.file.size
        count = -(-job.file.size // size)
        checksum = checksums.composite(job.files.part_digests(job.file, size, count))
    return checksums.matches(head, checksum, job.file.size)


def _upload(transfer: s3put.Transfer, job: Job, checksum: str, extra: dict[str, Any], attempt: int) -> bool | None:
    from botocore.exceptions import BotoCoreError, ClientError

    from aep_ops.aws import error_code, translate

    try:
        with job.files.open(job.file) as stream:
            return s3put.put(transfer, stream, job.key, size=job.file.size, checksum=checksum, extra=extra)
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in TRANSIENT and attempt < ATTEMPTS:
            return None
        raise translate(exc, doing=f"uploading {job.file.path} to s3://{transfer.bucket}/{job.key}",
                        client=transfer.client) from exc


def _extra(job: Job, checksum: str, lines: int, first: float | None, last: float | None,
           lock: dict[str, Any] | None) -> dict[str, Any]:
    meta = {"aep-sha256": checksum, "aep-lines": str(lines), "aep-first": iso(first) or "",
            "aep-last": iso(last) or "", "aep-source": urllib.parse.quote(f"{job.host.name}:{job.file.path}")}
    extra: dict[str, Any] = {"Metadata": meta, "Tagging": f"aep-class={job.source.klass}",
                             "ContentType": "application/gzip" if job.file.name.endswith(".gz") else "text/plain"}
    if job.source.klass == "audit" and lock:
        extra["ObjectLockMode"] = lock["mode"]
        extra["ObjectLockRetainUntilDate"] = datetime.now(timezone.utc) + timedelta(days=int(lock["days"]))
    return extra
