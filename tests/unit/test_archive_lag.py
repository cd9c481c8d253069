"""Where a WAL file name puts the end of its segment (what ``archive_facts`` compares the write
position with). The archive lag itself, each of its branches against a real PostgreSQL whose
archiver is held or failing: tests/integration/test_archive_facts.py."""

from __future__ import annotations

from aep_ops.db.backends.local_facts import _segment_end

MB16 = 16 * 1024 * 1024


def test_segment_end_from_wal_and_backup_names():
    assert _segment_end("000000010000000000000008", MB16) == 9 * MB16
    assert _segment_end("000000010000000100000002", MB16) == (256 + 3) * MB16
    assert _segment_end("000000010000000000000005.00000028.backup", MB16) == 6 * MB16


def test_history_files_name_no_segment():
    assert _segment_end("00000002.history", MB16) is None
