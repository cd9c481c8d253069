"""amcheck over every B-tree index: healthy indexes pass in one statement, and a corrupt one is
named (the fast path fails as a whole, the fallback checks index by index)."""

from __future__ import annotations

from aep_ops.pg import facts


def test_corrupt_index_is_named_and_healthy_ones_pass(pg_cluster):
    pg_cluster.sql("create table t (id int primary key, v text)")
    pg_cluster.sql("create index t_v on t (v)")
    pg_cluster.sql("insert into t select g, md5(g::text) from generate_series(1, 20000) g")
    pg_cluster.sql("checkpoint")
    with pg_cluster.cluster.connect() as conn:
        assert facts.amcheck_all(conn) == []
        path = conn.execute("select pg_relation_filepath('t_v')").fetchone()[0]
    pg_cluster.cluster.stop()
    index_file = pg_cluster.datadir / path
    with open(index_file, "r+b") as fh:  # scribble over the middle of page 1 (data checksums are on)
        fh.seek(8192 + 4000)
        fh.write(b"\xff" * 64)
    pg_cluster.cluster.start()
    with pg_cluster.cluster.connect() as conn:
        failures = facts.amcheck_all(conn)
    assert [f.index.name for f in failures] == ["t_v"]
    assert failures[0].error
