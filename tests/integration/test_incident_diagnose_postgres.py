"""The PostgreSQL source of incident.diagnose against real PostgreSQL 15 with induced conditions:
a blocking chain three deep with two roots, an idle-in-transaction session, connections near the
limit, and a server that accepts TCP and never answers."""

from __future__ import annotations

import threading
import time

import pytest
from psycopg.conninfo import conninfo_to_dict

from aep_ops.incident.model import CRITICAL, OK, PARTIAL, TIMEOUT, WARNING
from aep_ops.incident.postgres_rules import iso
from aep_ops.incident.source_postgres import PostgresThresholds, collect_postgres
from tests.support.pg_conditions import Sessions, backend_start, silent_server, wait_lock_waiting, wait_state


@pytest.fixture
def sessions(pg_cluster):
    s = Sessions(pg_cluster.dsn)
    yield s
    s.close()


def _collect(dsn: str, deadline: float = 10, **thresholds):
    return collect_postgres(conninfo_to_dict(dsn), deadline=deadline, thresholds=PostgresThresholds(**thresholds),
                            env_name="local", since_seconds=900)


def _walk(node: dict, depth: int = 0):
    yield node["pid"], depth
    for child in node["children"]:
        yield from _walk(child, depth + 1)


def test_lock_tree_three_deep_two_roots(pg_cluster, sessions):
    pg_cluster.sql("create table t_lock (id int)")
    a = sessions.idle_in_transaction("A", "select * from t_lock")
    b = sessions.idle_in_transaction("B", "select * from t_lock")
    c, d = sessions.open("C", autocommit=False), sessions.open("D")
    pa, pb, pc, pd = (x.info.backend_pid for x in (a, b, c, d))
    sessions.in_background(c, "lock table t_lock in access exclusive mode")
    wait_lock_waiting(pg_cluster.dsn, pc)
    sessions.in_background(d, "select count(*) from t_lock")
    wait_lock_waiting(pg_cluster.dsn, pd)
    time.sleep(1.2)  # so that the waits exceed blocked_seconds=1

    result = _collect(pg_cluster.dsn, blocked_seconds=1)
    assert result.status == OK, result.error
    tree = result.data["lock_tree"]
    assert sorted(r["pid"] for r in tree) == sorted([pa, pb])  # the two roots, and nothing else at the top
    for root in tree:
        assert list(_walk(root["tree"])) == [(root["pid"], 0), (pc, 1), (pd, 2)]
        assert root["blocked"] == 2 and root["longest_wait"] >= 1
    print("\n" + result.raw["lock_tree"])
    blockers = [f for f in result.findings if f.runbook == "db.terminate" and "blocked behind" in f.what]
    assert {f.details["pid"] for f in blockers} == {pa, pb}
    assert result.findings[:2] == blockers  # the root blockers come first
    for f in blockers:
        pid = f.details["pid"]
        start = iso(backend_start(pg_cluster.dsn, pid))
        assert f.severity == CRITICAL
        assert f.command == f"inv db.terminate --env local --pid {pid} --backend-start {start}"
    # root blockers are listed before the sessions behind them in the raw text too
    lines = result.raw["lock_tree"].splitlines()
    assert lines[0].startswith("root pid") and f"pid {pc}" in lines[2]


def test_idle_in_transaction_older_than_threshold(pg_cluster, sessions):
    old = sessions.idle_in_transaction("old-idle")
    wait_state(pg_cluster.dsn, old.info.backend_pid, "idle in transaction")
    time.sleep(1.2)
    fresh_conn = sessions.idle_in_transaction("fresh-idle")
    result = _collect(pg_cluster.dsn, idle_in_transaction_seconds=1)
    idle = [f for f in result.findings if "idle in transaction" in f.what]
    assert len(idle) == 1 and idle[0].severity == WARNING
    assert idle[0].command == "inv db.terminate --env local --idle-in-transaction-older-than 1s"
    pids = [s["pid"] for s in idle[0].details["sessions"]]
    assert pids == [old.info.backend_pid] and fresh_conn.info.backend_pid not in pids


def test_connections_near_the_limit(pg_cluster_factory):
    cluster = pg_cluster_factory.make(settings={"max_connections": "10"})  # 7 for ordinary users
    s = Sessions(cluster.dsn)
    try:
        result = _collect(cluster.dsn, connections_percent=80)
        assert not [f for f in result.findings if "client connections" in f.what]
        for i in range(5):  # 5 + the collector's own = 6 of 7: 86 %
            s.open(f"filler-{i}")
        result = _collect(cluster.dsn, connections_percent=80, connections_critical_percent=95)
        found = [f for f in result.findings if "client connections" in f.what]
        assert len(found) == 1 and found[0].severity == WARNING, result.findings
        assert found[0].details == {"connections": 6, "available": 7, "max_connections": 10}
        s.open("filler-last")  # 7 of 7
        result = _collect(cluster.dsn, connections_percent=80, connections_critical_percent=95)
        assert [f.severity for f in result.findings if "client connections" in f.what] == [CRITICAL]
    finally:
        s.close()


def test_statement_timeout_gives_partial_with_the_rest(pg_cluster, sessions):
    """A read that its statement timeout cancels (here: the view pg_stat_archiver locked by another
    session, which touches no table a new connection needs) leaves the other reads reported."""
    holder = sessions.open("view-locker", autocommit=False)
    holder.execute("lock table pg_catalog.pg_stat_archiver in access exclusive mode")
    result = _collect(pg_cluster.dsn, deadline=8, query_timeout_ms=500)
    holder.rollback()
    assert result.status == PARTIAL, (result.status, result.error)
    assert result.error.startswith("archiver: ") and "statement timeout" in result.error, result.error
    assert {"sessions", "connections", "databases", "replication"} <= set(result.data)
    assert "archiver" not in result.data and result.elapsed < 8


def test_a_query_that_hangs_is_cancelled_at_the_deadline(pg_cluster, sessions):
    """The statement timeout is longer than the deadline: the deadline timer cancels the hung read,
    the source answers partial within deadline + 1 s, and its timer thread is gone."""
    holder = sessions.open("view-locker", autocommit=False)
    holder.execute("lock table pg_catalog.pg_stat_archiver in access exclusive mode")
    before = set(threading.enumerate())
    t0 = time.monotonic()
    result = _collect(pg_cluster.dsn, deadline=2, query_timeout_ms=60_000)
    took = time.monotonic() - t0
    after = set(threading.enumerate())
    holder.rollback()
    print(f"\nhung read: {result.status} after {took:.2f} s: {result.error}")
    assert result.status == PARTIAL and "deadline of 2 s reached" in result.error, result.error
    assert "archiver: cancelled at the deadline; pg_stat_statements: not read (deadline)" in result.error
    assert "sessions" in result.data and took < 3
    assert after - before == set()


def test_silent_server_times_out_within_the_deadline_and_leaves_no_thread():
    before = set(threading.enumerate())
    with silent_server() as port:
        t0 = time.monotonic()
        result = collect_postgres({"host": "127.0.0.1", "port": port, "user": "x", "dbname": "x"}, deadline=2,
                                  thresholds=PostgresThresholds(), env_name="local", since_seconds=60)
        took = time.monotonic() - t0
    print(f"\nsilent server: {result.status} after {took:.2f} s: {result.error}")
    assert result.status in (TIMEOUT, "error") and result.error
    assert took < 2 + 1
    assert set(threading.enumerate()) - before == set()


def test_normal_cluster_is_ok_quickly(pg_cluster):
    t0 = time.monotonic()
    result = _collect(pg_cluster.dsn)
    took = time.monotonic() - t0
    print(f"\nnormal cluster: {result.status} in {took:.3f} s ({result.elapsed:.3f} s)")
    assert result.status == OK and result.error is None
    assert result.findings == [] and result.data["statements_installed"] is False
    assert set(result.raw) >= {"pg_stat_activity", "connections", "pg_stat_database", "pg_stat_archiver"}
