"""The SHA-256 S3 keeps for an object, computed from the file on its host.

A single-part object's ChecksumSHA256 is the SHA-256 of the whole file. A multipart object's is
*composite*: the SHA-256 of the concatenated binary SHA-256 digests of its parts, with ``-N``
appended by AWS (moto leaves the suffix off). So a whole-file SHA-256 never equals a multipart
object's: the local value must be computed with the object's own part size."""

from __future__ import annotations

import base64
import re
import hashlib
from typing import Any

MB = 1024 * 1024


def composite(part_digests: list[bytes]) -> str:
    if len(part_digests) == 1:
        return base64.b64encode(part_digests[0]).decode()
    return base64.b64encode(hashlib.sha256(b"".join(part_digests)).digest()).decode()


def part_size_for(size: int, chunk: int) -> int:
    """The part size s3transfer really uses for a file of ``size`` (it grows parts beyond 10,000)."""
    from s3transfer.utils import ChunksizeAdjuster

    return ChunksizeAdjuster().adjust_chunksize(chunk, size)


def stored(head: dict[str, Any]) -> tuple[str | None, int]:
    """(the object's SHA-256 without AWS's ``-N`` suffix, its number of parts: 1 when not multipart)."""
    value = head.get("ChecksumSHA256")
    etag = re.search(r"-(\d+)$", str(head.get("ETag") or "").strip('"'))  # a multipart ETag ends in -N
    parts = int(head.get("PartsCount") or (etag[1] if etag else 1))
    if value and "-" in value:
        value, count = value.rsplit("-", 1)
        parts = int(count) if count.isdigit() else parts
    return value, parts


def matches(head: dict[str, Any], local: str, size: int) -> str | None:
    """None when the object is the file (size and checksum), else why not, in words."""
    value, _ = stored(head)
    if int(head.get("ContentLength", -1)) != size:
        return f"its size is {head.get('ContentLength')} bytes, the file's {size}"
    if not value:
        return "it has no SHA-256 checksum to compare (not uploaded by aep-ops)"
    if value != local:
        return f"its SHA-256 {value} is not the file's {local}"
    return None
