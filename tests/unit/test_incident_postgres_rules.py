"""Thresholds -> findings for the PostgreSQL source, table-driven and pure (no server)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from aep_ops.base import redact
from aep_ops.incident.locktree import Waiter, build
from aep_ops.incident.model import CRITICAL, INFO, WARNING
from aep_ops.incident.postgres_rules import PostgresFacts, PostgresThresholds, findings, span
from aep_ops.pg.activity import ConnectionUsage, DatabaseStats, SessionRow, Statement, shown_query
from aep_ops.pg.facts import ArchiverStatus

T0 = datetime(2026, 12, 7, 23, 0, 0, 123456, tzinfo=timezone.utc)


def _session(pid, state="active", *, blocking=(), wait=None, xact=None, query=None, since=None, text="select 1",
             app="api"):
    return SessionRow(pid, T0 + timedelta(seconds=pid), "aep", app, "10.0.0.5", "aep", state, None, None, None,
                      None, None, text, tuple(blocking), xact, query, since, wait)


def _run(facts, **thresholds):
    return findings(facts, PostgresThresholds(**thresholds), "prod", "aep@db:5432/aep")


def _with_tree(sessions):
    return PostgresFacts(sessions=sessions,
                         forest=build(Waiter(s.pid, s.blocking_pids, s.lock_wait_seconds or 0) for s in sessions))


def test_nothing_wrong_no_findings():
    facts = PostgresFacts(sessions=[_session(1, "idle", since=5)], forest=[],
                          connections=ConnectionUsage(5, 100, 3),
                          databases=[DatabaseStats("aep", 99_000, 1_000, 0, None, 1000)], freeze_max_age=200_000_000,
                          replication={"standby-1": 0.5}, statements=None)
    assert _run(facts) == []


def test_root_blockers_critical_past_blocked_seconds_with_exact_command():
    sessions = [_session(101, "idle in transaction", since=100), _session(102, "idle in transaction", since=90),
                _session(103, blocking=(101, 102), wait=45.0), _session(104, blocking=(103,), wait=40.0)]
    found = [f for f in _run(_with_tree(sessions), blocked_seconds=30) if f.runbook == "db.terminate"
             and "blocked behind" in f.what]
    assert [f.details["pid"] for f in found] == [101, 102]
    assert all(f.severity == CRITICAL and f.details["blocked"] == 2 for f in found)
    start = (T0 + timedelta(seconds=101)).isoformat()
    assert found[0].command == f"inv db.terminate --env prod --pid 101 --backend-start {start}"
    assert start.endswith(".123456+00:00")
    assert "incident.postgres.blocked_seconds" in found[0].threshold


def test_short_waits_are_a_warning():
    sessions = [_session(1, "idle in transaction", since=3), _session(2, blocking=(1,), wait=2.0)]
    (f,) = [f for f in _run(_with_tree(sessions), blocked_seconds=30) if "blocked behind" in f.what]
    assert f.severity == WARNING


@pytest.mark.parametrize("since, expected", [(299.0, 0), (300.0, 1), (4000.0, 1)])
def test_idle_in_transaction_threshold(since, expected):
    facts = PostgresFacts(sessions=[_session(7, "idle in transaction", since=since), _session(8, "idle", since=9e9)])
    found = [f for f in _run(facts) if "idle in transaction" in f.what]
    assert len(found) == expected
    if found:
        assert found[0].command == "inv db.terminate --env prod --idle-in-transaction-older-than 5m"
        assert [s["pid"] for s in found[0].details["sessions"]] == [7]


def test_long_queries_point_at_db_cancel():
    facts = PostgresFacts(sessions=[_session(9, query=700.0), _session(10, query=10.0),
                                    _session(11, "idle in transaction", query=9000.0, since=1)])
    (f,) = [f for f in _run(facts, long_query_seconds=600) if f.runbook == "db.cancel"]
    assert f.command == "inv db.cancel --env prod --running-longer-than 10m"
    assert [s["pid"] for s in f.details["sessions"]] == [9]


@pytest.mark.parametrize("used, severity", [(77, None), (78, WARNING), (92, WARNING), (93, CRITICAL)])
def test_connections_against_max_minus_reserved(used, severity):
    facts = PostgresFacts(connections=ConnectionUsage(used, 100, 3))  # 97 available
    found = [f for f in _run(facts, connections_percent=80, connections_critical_percent=95)
             if "client connections" in f.what]
    assert [f.severity for f in found] == ([severity] if severity else [])


def test_replication_lag_and_standby_delay():
    facts = PostgresFacts(replication={"a": 10.0, "b": 61.0},
                          standby=SimpleNamespace(in_recovery=True, replay_delay_seconds=120.0))
    found = [f.details["standby"] for f in _run(facts) if "lags" in f.what]
    assert found == ["(this standby: last replayed commit)", "b"]


def test_cache_hit_ratio_needs_enough_blocks():
    facts = PostgresFacts(databases=[DatabaseStats("cold", 50, 50, 0, None, 1),
                                     DatabaseStats("busy", 80_000, 20_000, 0, None, 1),
                                     DatabaseStats("fine", 95_000, 5_000, 0, None, 1)])
    assert [f.details["database"] for f in _run(facts) if "cache hit" in f.what] == ["busy"]


def test_deadlocks_counted_across_databases():
    facts = PostgresFacts(databases=[DatabaseStats("a", 0, 0, 2, T0, 1), DatabaseStats("b", 0, 0, 1, None, 1)])
    (f,) = [f for f in _run(facts) if "deadlock" in f.what]
    assert f.what.startswith("3 deadlock(s)") and f.details == {"a": 2, "b": 1}
    assert [f for f in _run(facts, deadlocks=4) if "deadlock" in f.what] == []


@pytest.mark.parametrize("age, severity", [(299_999_999, None), (300_000_000, WARNING),
                                           (2 ** 30 - 1, WARNING), (2 ** 30, CRITICAL)])
def test_xid_age_relative_to_freeze_max_age_and_wraparound(age, severity):
    facts = PostgresFacts(databases=[DatabaseStats("aep", 0, 0, 0, None, age)], freeze_max_age=200_000_000)
    found = [f.severity for f in _run(facts) if "transaction ID age" in f.what]
    assert found == ([severity] if severity else [])


def test_archiver_failing_points_at_backup_check():
    failing = ArchiverStatus(10, "0001", T0, 3, "0002", T0 + timedelta(minutes=1), None)
    recovered = ArchiverStatus(11, "0003", T0 + timedelta(minutes=2), 3, "0002", T0 + timedelta(minutes=1), None)
    (f,) = _run(PostgresFacts(archiver=failing))
    assert (f.severity, f.runbook, f.command) == (CRITICAL, "backup.check", "inv backup.check --env prod")
    assert _run(PostgresFacts(archiver=recovered)) == []


def test_top_statements_only_when_installed_and_redacted():
    redact.register("s3cr3t-value")
    stmt = Statement(1, 10, 5000.0, 500.0, 10, "select * from t where token = 's3cr3t-value'")
    (f,) = _run(PostgresFacts(statements=[stmt]))
    assert f.severity == INFO and "s3cr3t-value" not in str(f.to_json())
    assert _run(PostgresFacts(statements=None)) == [] and _run(PostgresFacts(statements=[stmt]), top_statements=0) == []


def test_shown_query_masks_password_literals_and_cuts():
    assert shown_query("ALTER ROLE app PASSWORD 'hunter2'") == "ALTER ROLE app PASSWORD '****'"
    assert len(shown_query("select " + "x" * 500, 50)) == 50


def test_thresholds_from_settings():
    settings = SimpleNamespace(env={"incident": {"postgres": {"blocked_seconds": 5, "top_statements": None}}})
    t = PostgresThresholds.from_settings(settings)
    assert t.blocked_seconds == 5 and t.top_statements == 5
    assert PostgresThresholds.from_settings(SimpleNamespace(env={})) == PostgresThresholds()


@pytest.mark.parametrize("seconds, text", [(300, "5m"), (90, "90s"), (3600, "1h"), (86400, "1d")])
def test_span_as_the_cli_takes_it(seconds, text):
    assert span(seconds) == text
