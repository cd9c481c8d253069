"""logs.fetch: the lines of a time window, from S3 and from the hosts, merged in time order.

Per host and source, one stream in rotation order: the shipped objects of the window's days
(widened by one rotation period: a key's date is its rotation's, not its lines'), then the
rotated files still on the host (unless S3 has them: same name), then the live file. The
streams are merged by time with a heap (``heapq.merge``): lines are read as they are printed,
never all held in memory. A line without a time of its own takes its predecessor's, so a
multi-line stack trace stays with its first line.
"""

from __future__ import annotations

import heapq
import posixpath
import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from aep_ops.base.errors import UsageError
from aep_ops.logs.keys import ROTATED, host_prefix
from aep_ops.logs.linetime import line_time
from aep_ops.logs.settings import Source

RELATIVE = re.compile(r"(\d+)\s*([smhd])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
PERIOD = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}
CHUNK = 1 << 20


@dataclass(frozen=True)
class Line:
    time: float
    host: str
    source: str
    text: str

    def to_json(self) -> dict[str, Any]:
        from aep_ops.logs.linetime import iso

        return {"time": iso(self.time), "host": self.host, "source": self.source, "line": self.text}


def when(flag: str, value: str | None, now: datetime) -> datetime | None:
    """``30m``/``2h``/``1d`` before now, or an ISO 8601 time with its offset."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise UsageError(f"{flag} is empty: give a duration such as 30m or a time such as 2026-12-07T14:00:00Z")
    match = RELATIVE.fullmatch(text)
    if match:
        return now - timedelta(seconds=int(match[1]) * SECONDS[match[2]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{flag} {text!r}: expected a duration such as 30m, 2h, 1d or an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise UsageError(f"{flag} {text!r} has no UTC offset: add Z or +HH:MM")
    return parsed.astimezone(timezone.utc)


def merged(streams: list[Iterator[Line]]) -> Iterator[Line]:
    return heapq.merge(*streams, key=lambda line: line.time)


def stream(host: str, source: Source, chunks: Iterable[Iterable[bytes]], since: float, until: float,
           pattern: re.Pattern[str] | None) -> Iterator[Line]:
    """The matching lines of one host's source: ``chunks`` yields each file's byte chunks in order."""
    last = since
    for file_chunks in chunks:
        for text in _lines(file_chunks):
            stamp = line_time(text)
            last = stamp if stamp is not None else last
            if last < since:
                continue
            if last > until:
                return
            if pattern is None or pattern.search(text):
                yield Line(last, host, source.name, text)


def s3_keys(client: Any, bucket: str, prefix: str, env: str, source: Source, host: str, since: datetime,
            until: datetime) -> list[str]:
    """The source's objects of the host for the window's days, widened by one rotation period."""
    base = host_prefix(prefix, env, source.key_role, host)
    stems = [posixpath.basename(p) for p in source.paths_on(host)]
    day, last = (since - PERIOD.get(source.schedule, PERIOD["daily"])).date(), (until + PERIOD["daily"]).date()
    keys = []
    paginator = client.get_paginator("list_objects_v2")
    while day <= last:
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{base}{day:%Y/%m/%d}/"):
            for item in page.get("Contents") or []:
                name = posixpath.basename(item["Key"])
                if any(_rotated_of(name, stem) for stem in stems):
                    keys.append(item["Key"])
        day += timedelta(days=1)
    return sorted(keys, key=posixpath.basename)


def s3_chunks(client: Any, bucket: str, key: str) -> Iterator[bytes]:
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        yield from _decoded(iter(lambda: body.read(CHUNK), b""), key.endswith(".gz"))
    finally:
        body.close()


def file_chunks(handle: Any, name: str) -> Iterator[bytes]:
    try:
        yield from _decoded(iter(lambda: handle.read(CHUNK), b""), name.endswith(".gz"))
    finally:
        handle.close()


def _rotated_of(name: str, stem: str) -> bool:
    import fnmatch

    match = ROTATED.search(name)
    return bool(match) and fnmatch.fnmatchcase(name[:match.start()], stem)


def _decoded(raw: Iterable[bytes], gz: bool) -> Iterator[bytes]:
    if not gz:
        yield from raw
        return
    inflater = zlib.decompressobj(wbits=47)
    for chunk in raw:
        data = inflater.decompress(chunk)
        while inflater.unused_data:  # a file of several gzip members
            rest = inflater.unused_data
            inflater = zlib.decompressobj(wbits=47)
            data += inflater.decompress(rest)
        if data:
            yield data
    tail = inflater.flush()
    if tail:
        yield tail


def _lines(chunks: Iterable[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for raw in complete:
            yield raw.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


def collect(settings: Any, *, host: str | None, since: datetime, until: datetime, pattern: re.Pattern[str] | None,
            role: str | None, closers: list[Any]) -> Iterator[Line]:
    """Every chosen host's streams merged; what must be closed after is appended to ``closers``."""
    from aep_ops.aws import client as aws_client
    from aep_ops.logs.hostfiles import HostFiles
    from aep_ops.logs.settings import bucket, logs_settings, sources
    from aep_ops.logs.targets import by_host, connect

    pairs = by_host(settings, sources(settings, role))
    if host is not None:
        names = [h.name for h, _ in pairs]
        pairs = [(h, s) for h, s in pairs if h.name == host.strip()]
        if not pairs:
            raise UsageError(f"--host {host}: no such host holds logs in {settings.env_name}"
                             f" (hosts: {', '.join(names)})")
    s3, name = aws_client(settings, "s3"), bucket(settings)
    prefix = logs_settings(settings).get("prefix") or ""
    streams = []
    for log_host, host_sources in pairs:
        executor = connect(settings, log_host)
        closers.append(executor)
        files = HostFiles(executor, local=log_host.local)
        for source in host_sources:
            keys = s3_keys(s3, name, prefix, settings.env_name, source, log_host.name, since, until)
            streams.append(stream(log_host.name, source, _sources_of(s3, name, keys, files, source, log_host.name),
                                  since.timestamp(), until.timestamp(), pattern))
    return merged(streams)


def _sources_of(s3: Any, bucket_name: str, keys: list[str], files: Any, source: Source,
                host: str) -> Iterator[Iterator[bytes]]:
    """S3's objects, then the rotated files S3 does not have yet, then the live files."""
    import sys

    from aep_ops.base.errors import AepError

    shipped = {posixpath.basename(k).removesuffix(".gz") for k in keys}
    for key in keys:
        yield s3_chunks(s3, bucket_name, key)
    patterns = source.paths_on(host)
    try:
        rotated = [f for f in files.matching([p + "-[0-9]*" for p in patterns]) if ROTATED.search(f.name)]
        live = files.matching(patterns)
    except AepError as exc:  # a host down must not hide what S3 and the other hosts have
        print(f"warning: {host}: its files cannot be read ({exc}): only its lines in S3 are shown", file=sys.stderr)
        return
    for file in sorted(rotated, key=lambda f: f.name):
        if file.name.removesuffix(".gz") not in shipped:
            yield file_chunks(files.open(file), file.name)
    for file in live:
        yield file_chunks(files.open(file), file.name)
