"""The drill's pg_amcheck, without a server: its command line per kind of drill, its report read as
PostgreSQL 15's pg_amcheck writes it (samples taken from real runs), its progress, the connection
string it is given, and how many workers the machine's cores allow."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aep_ops.base import cores
from aep_ops.dr import amcheck_job
from aep_ops.pg import amcheck
from aep_ops.pg.amcheck import AmcheckJob, AmcheckOptions, conninfo_of, parse

INDEX_ONLY = 'btree index "aep.public.ledger_v":\n    ERROR:  invalid page in block 1 of relation base/16384/16574\n'
HEAP_AND_INDEX = (
    'btree index "aep.public.ledger_v":\n'
    "    ERROR:  invalid page in block 1 of relation base/16384/16574\n"
    'heap table "aep.public.heapc", block 0, offset 3:\n'
    "    xmin 4294967295 precedes relation freeze threshold 0:727\n"
    'heap table "aep.public.heapc", block 0, offset 4:\n'
    "    line pointer to page offset 8191 with length 47 ends beyond maximum page offset 8192\n"
)
CHECKSUM = "WARNING:  page verification failed, calculated checksum 37151 but expected 3047\n"


def test_a_quick_drill_selects_the_b_tree_indexes_and_a_thorough_one_everything():
    quick = amcheck.argv("/usr/lib/postgresql/15/bin", "host=/s port=5 dbname=aep", AmcheckOptions(jobs=4))
    assert quick[0] == "/usr/lib/postgresql/15/bin/pg_amcheck"
    assert quick[1:] == ["--jobs=4", "--no-password", "--progress", "--index=*.*", "--", "host=/s port=5 dbname=aep"]
    thorough = amcheck.argv(None, "dbname=aep", AmcheckOptions(jobs=0, heap=True, heapallindexed=True))
    assert "--index=*.*" not in thorough and "--heapallindexed" in thorough and "--jobs=1" in thorough
    assert thorough[-2:] == ["--", "dbname=aep"], "the connection string is a value, behind --"


def test_findings_name_each_relation_with_pg_amcheck_s_own_words():
    result = parse(2, HEAP_AND_INDEX, "  0/199 relations (0%),   0/746 pages (0%)\n" + CHECKSUM, 1.5)
    assert not result.ok and result.corrupt_relations == ["public.heapc", "public.ledger_v"]
    assert [f.describe() for f in result.findings] == [
        "public.ledger_v: invalid page in block 1 of relation base/16384/16574",
        "public.heapc (block 0, offset 3): xmin 4294967295 precedes relation freeze threshold 0:727",
        "public.heapc (block 0, offset 4): line pointer to page offset 8191 with length 47 ends beyond maximum"
        " page offset 8192"]
    assert result.errors == [CHECKSUM.strip()], "the server's checksum warning is kept; progress is not"


def test_a_clean_run_is_ok_and_a_run_that_checked_nothing_is_not():
    clean = parse(0, "", "  0/199 relations (0%),   0/746 pages (0%)\n199/199 relations (100%), 746/746 pages (100%)\n", 0.2)
    assert clean.ok and clean.findings == [] and clean.errors == []
    skipped = parse(0, "", 'pg_amcheck: warning: skipping database "aep": amcheck is not installed\n', 0.1)
    assert not skipped.ok and skipped.errors == ['warning: skipping database "aep": amcheck is not installed']
    refused = parse(1, "", 'pg_amcheck: error: connection to server on socket "/x/.s.PGSQL.5" failed: No such file\n', 0.0)
    assert not refused.ok and refused.errors[0].startswith("error: connection to server")
    silent = parse(2, "", "", 0.0)
    assert silent.errors == ["pg_amcheck exited 2 without naming a relation"]


def test_a_flood_of_findings_is_kept_bounded_and_counted():
    text = "".join(f'heap table "aep.public.t", block {b}, offset 1:\n    bad tuple\n' for b in range(500))
    result = parse(2, text, "", 3.0)
    assert len(result.findings) == amcheck.MAX_FINDINGS and result.more_findings == 500 - amcheck.MAX_FINDINGS
    assert result.corrupt_relations == ["public.t"]


def test_progress_is_read_back_as_bytes_checked_of_the_total(tmp_path):
    (tmp_path / "stderr").write_text("  0/12 relations (0%),   0/400 pages (0%)\n 5/12 relations (41%), 100/400 pages (25%)\n")
    job = AmcheckJob(SimpleNamespace(), tmp_path, 0.0, [])
    assert job.progress() == (100 * 8192, 400 * 8192)
    (tmp_path / "stderr").write_text("")
    assert job.progress() is None


def test_the_connection_string_keeps_what_an_older_libpq_knows_and_never_the_password():
    params = {"host": "/tmp/sock", "port": "5432", "dbname": "aep", "user": "postgres", "sslmode": "prefer",
              "sslcertmode": "allow", "password": "s3cret", "channel_binding": "prefer"}
    conn = SimpleNamespace(info=SimpleNamespace(get_parameters=lambda: params, password="s3cret"))
    conninfo, password = conninfo_of(conn)
    assert "sslcertmode" not in conninfo and "channel_binding" not in conninfo and "s3cret" not in conninfo
    assert "dbname=aep" in conninfo and "host=/tmp/sock" in conninfo and password == "s3cret"


def test_the_password_goes_in_a_passfile_only_the_run_can_read(tmp_path):
    path = amcheck._passfile(tmp_path, "pa:ss\\word")
    assert path.read_text() == "*:*:*:*:pa\\:ss\\\\word\n" and path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("cpu_max, expected", [("200000 100000\n", 2), ("150000 100000\n", 2), ("max 100000\n", None),
                                               ("garbage\n", None), (None, None)])
def test_workers_follow_the_cores_this_process_may_use(tmp_path, cpu_max, expected):
    affinity = cores.available_cores(tmp_path / "missing")
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    assert cores.available_cores(path) == (min(affinity, expected) if expected else affinity)
    assert cores.configured_or_cores(3) == 3
    assert cores.configured_or_cores(0) == cores.configured_or_cores(None) == cores.configured_or_cores(True) \
        == cores.available_cores()


def _ctx(drill: dict, thorough: bool = False) -> SimpleNamespace:
    return SimpleNamespace(env={"drill": drill}, params={"thorough": thorough})


def test_what_each_kind_of_drill_checks_comes_from_the_environment():
    assert amcheck_job.options(_ctx({})) == AmcheckOptions(jobs=cores.available_cores())
    assert amcheck_job.options(_ctx({}, thorough=True)) == AmcheckOptions(
        jobs=cores.available_cores(), heap=True, heapallindexed=True)
    configured = {"amcheck": {"jobs": 6, "quick": {"heap": True}, "thorough": {"heapallindexed": False}}}
    assert amcheck_job.options(_ctx(configured)) == AmcheckOptions(jobs=6, heap=True, heapallindexed=False)
    assert amcheck_job.options(_ctx(configured, thorough=True)) == AmcheckOptions(jobs=6, heap=True,
                                                                                   heapallindexed=False)
    assert AmcheckOptions(jobs=6, heap=True, heapallindexed=True).describe() == \
        "tables and B-tree indexes, 6 jobs, heapallindexed"

