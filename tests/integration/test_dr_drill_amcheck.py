"""The drill's pg_amcheck against a real server: what each kind of drill reads, and every corrupt
relation named."""

from __future__ import annotations

from aep_ops.pg.amcheck import AmcheckJob, AmcheckOptions


def test_pg_amcheck_reads_the_heap_only_when_asked_and_names_every_corrupt_relation(pg_cluster):
    """The drill's pg_amcheck against a real server: a quick run (B-tree indexes only) finds the
    corrupt index and not the corrupt table page; a thorough run finds both; a server that is
    gone is an error of pg_amcheck's own, not a clean bill of health."""
    pg_cluster.sql("create table t (id int primary key, v text)")
    pg_cluster.sql("create index t_v on t (v)")
    pg_cluster.sql("insert into t select g, md5(g::text) from generate_series(1, 20000) g")
    pg_cluster.sql("create table h (id int, v text)")
    pg_cluster.sql("insert into h select g, md5(g::text) from generate_series(1, 20000) g")
    pg_cluster.sql("create extension if not exists amcheck")
    pg_cluster.sql("checkpoint")
    with pg_cluster.cluster.connect() as conn:
        paths = [conn.execute("select pg_relation_filepath(%s::regclass)", (name,)).fetchone()[0] for name in ("t_v", "h")]
    conninfo = pg_cluster.cluster.dsn()
    healthy = AmcheckJob.start(None, conninfo, AmcheckOptions(jobs=2, heap=True, heapallindexed=True)).wait(60)
    assert healthy.ok, healthy
    pg_cluster.cluster.stop()
    for path in paths:
        with open(pg_cluster.datadir / path, "r+b") as fh:  # the middle of page 1 (data checksums are on)
            fh.seek(8192 + 4000)
            fh.write(b"\xff" * 64)
    pg_cluster.cluster.start()

    quick = AmcheckJob.start(None, conninfo, AmcheckOptions(jobs=2)).wait(60)
    assert quick.exit_code == 2 and quick.corrupt_relations == ["public.t_v"]
    assert quick.findings[0].message.startswith("invalid page in block 1 of relation ")
    thorough = AmcheckJob.start(None, conninfo, AmcheckOptions(jobs=2, heap=True, heapallindexed=True)).wait(60)
    assert thorough.exit_code == 2 and thorough.corrupt_relations == ["public.h", "public.t_v"]

    pg_cluster.cluster.stop()
    try:
        gone = AmcheckJob.start(None, conninfo, AmcheckOptions(jobs=2)).wait(60)
    finally:
        pg_cluster.cluster.start()
    assert not gone.ok and gone.findings == [] and "connection to server" in gone.errors[0]
