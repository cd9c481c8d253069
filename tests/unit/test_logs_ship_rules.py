"""logs.ship's rules that need no S3: keys, composite checksums as S3 computes them, HEAD
comparison, line times, --max-bandwidth."""

from __future__ import annotations

import base64
import hashlib

import pytest

from aep_ops.base.errors import UsageError
from aep_ops.logs import checksums
from aep_ops.logs.keys import object_key
from aep_ops.logs.linetime import line_time
from aep_ops.logs.runbooks import bandwidth


def test_the_key_is_the_files_rotation_day_host_and_role():
    assert object_key("", "prod", "api", "api-1", "api.log-20261207-1796653244.gz", 0) == \
        "prod/api/api-1/2026/12/07/api.log-20261207-1796653244.gz"
    assert object_key("/logs/", "dev", "db", "db-1", "pg.log.1", 1796653244).startswith("logs/dev/db/db-1/2026/12/")


def test_composite_checksum_is_the_sha256_of_the_parts_digests():
    data = bytes(range(256)) * 1000
    parts = [hashlib.sha256(data[i:i + 100_000]).digest() for i in range(0, len(data), 100_000)]
    assert checksums.composite(parts) == base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode()
    whole = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert checksums.composite([hashlib.sha256(data).digest()]) == whole
    assert checksums.composite(parts) != whole  # why the local value needs the object's part size


def test_head_comparison_reads_the_parts_from_the_suffix_or_the_etag():
    assert checksums.stored({"ChecksumSHA256": "abc=-3"}) == ("abc=", 3)
    assert checksums.stored({"ChecksumSHA256": "abc=", "ETag": '"d41d8-12"'}) == ("abc=", 12)
    assert checksums.matches({"ContentLength": 5, "ChecksumSHA256": "abc="}, "abc=", 5) is None
    assert "size" in checksums.matches({"ContentLength": 4, "ChecksumSHA256": "abc="}, "abc=", 5)
    assert "no SHA-256" in checksums.matches({"ContentLength": 5}, "abc=", 5)
    assert "not the file's" in checksums.matches({"ContentLength": 5, "ChecksumSHA256": "xyz="}, "abc=", 5)


@pytest.mark.parametrize("line, expected", [
    ('{"level":30,"time":1796653244123,"msg":"x"}', 1796653244.123),
    ('{"time":"2026-12-07T14:20:44.500Z","seq":1}', 1796653244.5),
    ('10.0.0.1 - - [07/Dec/2026:14:20:44 +0000] "GET / HTTP/1.1" 200', 1796653244.0),
    ("2026-12-07 14:20:44.000 UTC [42] LOG:  checkpoint starting", 1796653244.0),
    ("no time here", None),
])
def test_line_times(line, expected):
    assert line_time(line) == (pytest.approx(expected) if expected else None)


def test_max_bandwidth():
    assert bandwidth("20MB") == 20 * 1024 * 1024 and bandwidth(None) is None
    for bad in ("", "fast", "10"):
        with pytest.raises(UsageError, match="--max-bandwidth"):
            bandwidth(bad)
