"""The canary sweep of test_secret_canary.py with the journal (and the locks) on PostgreSQL, as
ops hosts share it: no canary in any spelling in the journal's rows, in the PostgreSQL server's
own files (heap, WAL, server log), under the state directory, or in any output, runs.show and
runs.list reading the journal back from PostgreSQL included. The journal's DSN is itself a
secret reference (``env:``)."""

from __future__ import annotations

import pytest

from tests.support.secret_scan import canary_world, files_under, leaks, outputs_say_what_happened, run_canaries


@pytest.fixture
def world(tmp_path, moto_server, pg_cluster):
    with canary_world(tmp_path, moto_server, journal_dsn=pg_cluster.dsn) as built:
        yield built


def _journal_rows(pg_cluster) -> dict[str, str]:
    """Every row of every table in the journal's schema, as PostgreSQL writes it as text."""
    tables = [r[0] for r in pg_cluster.sql(
        "select table_name from information_schema.tables where table_schema = 'aep_ops' order by 1")]
    assert {"runs", "steps"} <= set(tables), f"no journal in PostgreSQL (tables: {tables})"
    return {f"aep_ops.{t} rows": "\n".join(r[0] for r in pg_cluster.sql(f'select t::text from aep_ops."{t}" t'))
            for t in tables}


def test_no_canary_reaches_the_postgresql_journal_or_its_server_files(cli, state_dir, tmp_path, world, pg_cluster):
    captured, runs = run_canaries(cli, world, tmp_path)
    assert not (state_dir / "journal.sqlite3").exists(), "the SQLite journal is not used"
    rows = _journal_rows(pg_cluster)
    recorded = {r[0] for r in pg_cluster.sql("select id from aep_ops.runs")}
    assert set(runs.values()) <= recorded, f"the runs {runs} are not all in the PostgreSQL journal"
    assert "****" in rows["aep_ops.steps rows"], "the steps' masked outputs are in the journal"
    pg_cluster.sql("checkpoint")  # the journal's pages on disk too, not only in the WAL

    found = leaks({**captured, **rows, **files_under(state_dir), **files_under(pg_cluster.base)})
    assert not found, "secrets leaked:\n" + "\n".join(found)
    outputs_say_what_happened(captured)
