"""WAL segment arithmetic and gap detection (pure logic behind backup.verify's wal_continuity)."""

from __future__ import annotations

import pytest

from aep_ops.backup.repo import segment_name, segment_position, wal_gaps

MB16 = 16 * 1024 * 1024


def seg(tli: int, pos: int, size: int = MB16) -> str:
    return segment_name(tli, pos, size)


def test_positions_cross_the_log_boundary():
    assert segment_position("0000000100000000000000FF") + 1 == segment_position("000000010000000100000000")
    assert seg(1, 256) == "000000010000000100000000"
    assert segment_position("000000020000000100000003") == 259, "the timeline is not part of the position"
    # 64 MB segments: 64 per log file
    assert segment_name(1, 64, 64 * 1024 * 1024) == "000000010000000100000000"
    with pytest.raises(ValueError):
        segment_position("00000001.history")


@pytest.mark.parametrize(("present", "start", "gaps"), [
    ({seg(1, p) for p in range(2, 10)}, seg(1, 2), []),
    ({seg(1, p) for p in (2, 3, 5, 6, 9)}, seg(1, 2),
     [{"from": seg(1, 4), "to": seg(1, 4), "segments": 1}, {"from": seg(1, 7), "to": seg(1, 8), "segments": 2}]),
    ({seg(1, p) for p in range(0xFD, 0x100)} | {seg(1, 0x101)}, seg(1, 0xFD),
     [{"from": "000000010000000100000000", "to": "000000010000000100000000", "segments": 1}]),
    ({seg(1, 2), seg(1, 3), seg(2, 4), seg(2, 5)}, seg(1, 2), []),  # promotion: the stream goes on on timeline 2
    ({seg(1, 1), seg(1, 2), seg(1, 5)}, seg(1, 4), [{"from": seg(1, 4), "to": seg(1, 4), "segments": 1}]),
    (set(), seg(1, 2), []),
])
def test_gaps_from_the_oldest_backup_to_the_newest_segment(present, start, gaps):
    assert wal_gaps(present, start) == gaps


def test_the_newest_backups_own_wal_must_be_there_too():
    assert wal_gaps(set(), seg(1, 2), seg(1, 3)) == [{"from": seg(1, 2), "to": seg(1, 3), "segments": 2}]
    assert wal_gaps({seg(1, 2)}, seg(1, 2), seg(1, 4)) == [{"from": seg(1, 3), "to": seg(1, 4), "segments": 2}]
    assert wal_gaps({seg(1, 2), seg(1, 3), seg(1, 6)}, seg(1, 2), seg(1, 3)) == [
        {"from": seg(1, 4), "to": seg(1, 5), "segments": 2}]
