"""PostgreSQL facts -> findings: the thresholds (``incident.postgres`` of an environment, schema in
aep_ops/config/schema_incident_postgres.py) and the rules that fire on them. Pure: the facts are
read by aep_ops.incident.source_postgres; each rule names its threshold and the exact command
that addresses it."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from aep_ops.incident.locktree import Root
from aep_ops.incident.model import CRITICAL, INFO, WARNING, Finding
from aep_ops.pg.activity import WRAPAROUND, SessionRow, iso, shown_query

SOURCE = "postgres"
CACHE_MIN_BLOCKS = 10_000  # fewer blocks touched since the reset: a ratio that means nothing yet
KEY = "incident.postgres."


@dataclass(frozen=True)
class PostgresThresholds:
    connections_percent: int = 80
    connections_critical_percent: int = 95
    blocked_seconds: int = 30
    idle_in_transaction_seconds: int = 300
    long_query_seconds: int = 300
    replication_lag_seconds: int = 60
    cache_hit_percent: int = 90
    deadlocks: int = 1
    xid_freeze_factor_percent: int = 150
    xid_wraparound_percent: int = 50
    query_timeout_ms: int = 5000
    top_statements: int = 5

    @classmethod
    def from_settings(cls, settings: Any) -> "PostgresThresholds":
        values = (settings.env.get("incident") or {}).get("postgres") or {}
        known = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in values.items() if k in known and v is not None})


@dataclass
class PostgresFacts:
    """What one collection read; None where a query failed or did not run."""

    sessions: list[SessionRow] | None = None
    forest: list[Root] | None = None
    connections: Any = None  # activity.ConnectionUsage
    databases: list | None = None  # activity.DatabaseStats
    freeze_max_age: int | None = None
    replication: dict[str, float] | None = None
    standby: Any = None  # activity.StandbyDelay
    archiver: Any = None  # pg.facts.ArchiverStatus
    statements: list | None = None  # activity.Statement; None: pg_stat_statements not installed


def span(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def session_line(s: SessionRow) -> str:
    """``(user application, state): 'query'`` -- who a session is, for a line that names its pid."""
    app = f" {s.application}" if s.application else ""
    return f"({s.user}{app}, {s.state}): {shown_query(s.query, 80)!r}"


def findings(facts: PostgresFacts, t: PostgresThresholds, env_name: str, where: str = "") -> list[Finding]:
    out: list[Finding] = []
    for rule in (_blockers, _idle_in_transaction, _long_queries, _connections, _replication, _cache, _deadlocks,
                 _xid_age, _archiver, _statements):
        out.extend(rule(facts, t, env_name, where))
    return out


def _blockers(facts, t, env, where):
    if not facts.forest:
        return []
    by_pid = {s.pid: s for s in facts.sessions or []}
    out = []
    for root in facts.forest:
        s = by_pid.get(root.pid)
        severity = CRITICAL if root.longest_wait >= t.blocked_seconds else WARNING
        what = (f"{root.blocked} session(s) blocked behind pid {root.pid} for up to {root.longest_wait:.0f} s"
                + (f" (a lock cycle: {list(root.cycle)})" if root.cycle else ""))
        details: dict[str, Any] = {"pid": root.pid, "blocked": root.blocked, "longest_wait": root.longest_wait,
                                   "cycle": list(root.cycle)}
        command = ""
        if s is not None:
            details.update(backend_start=iso(s.backend_start), session=f"pid {s.pid} {session_line(s)}")
            command = f"inv db.terminate --env {env} --pid {s.pid} --backend-start {iso(s.backend_start)}"
        out.append(Finding(severity, SOURCE, what, f"blocked > {t.blocked_seconds} s ({KEY}blocked_seconds)",
                           runbook="db.terminate", command=command, where=where, details=details))
    return out


def _idle_in_transaction(facts, t, env, where):
    idle = [s for s in facts.sessions or [] if s.idle_in_transaction
            and (s.state_seconds or 0) >= t.idle_in_transaction_seconds]
    if not idle:
        return []
    oldest = max(idle, key=lambda s: s.state_seconds or 0)
    return [Finding(WARNING, SOURCE,
                    f"{len(idle)} session(s) idle in transaction longer than {span(t.idle_in_transaction_seconds)}"
                    f" (longest: pid {oldest.pid}, {oldest.state_seconds:.0f} s)",
                    f"idle in transaction > {t.idle_in_transaction_seconds} s ({KEY}idle_in_transaction_seconds)",
                    runbook="db.terminate",
                    command=f"inv db.terminate --env {env} --idle-in-transaction-older-than"
                            f" {span(t.idle_in_transaction_seconds)}",
                    where=where, details={"sessions": [_target(s) for s in idle]})]


def _long_queries(facts, t, env, where):
    running = [s for s in facts.sessions or [] if s.active and (s.query_seconds or 0) >= t.long_query_seconds]
    if not running:
        return []
    oldest = max(running, key=lambda s: s.query_seconds or 0)
    return [Finding(WARNING, SOURCE,
                    f"{len(running)} quer(ies) running longer than {span(t.long_query_seconds)}"
                    f" (longest: pid {oldest.pid}, {oldest.query_seconds:.0f} s)",
                    f"query > {t.long_query_seconds} s ({KEY}long_query_seconds)", runbook="db.cancel",
                    command=f"inv db.cancel --env {env} --running-longer-than {span(t.long_query_seconds)}",
                    where=where, details={"sessions": [_target(s) for s in running]})]


def _target(s: SessionRow) -> dict[str, Any]:
    return {"pid": s.pid, "backend_start": iso(s.backend_start), "user": s.user, "application": s.application,
            "state": s.state, "xact_seconds": s.xact_seconds, "query_seconds": s.query_seconds,
            "state_seconds": s.state_seconds, "query": shown_query(s.query, 80)}


def _connections(facts, t, env, where):
    c = facts.connections
    if c is None or c.percent < t.connections_percent:
        return []
    critical = c.percent >= t.connections_critical_percent
    limit = t.connections_critical_percent if critical else t.connections_percent
    name = "connections_critical_percent" if critical else "connections_percent"
    return [Finding(CRITICAL if critical else WARNING, SOURCE,
                    f"{c.client_backends} client connections of {c.available} available ({c.percent:.0f}%;"
                    f" max_connections {c.max_connections} - {c.superuser_reserved} reserved)",
                    f">= {limit}% of connections ({KEY}{name})", where=where,
                    details={"connections": c.client_backends, "available": c.available,
                             "max_connections": c.max_connections})]


def _replication(facts, t, env, where):
    lags = dict(facts.replication or {})
    if facts.standby is not None and facts.standby.in_recovery and facts.standby.replay_delay_seconds is not None:
        lags["(this standby: last replayed commit)"] = facts.standby.replay_delay_seconds
    return [Finding(WARNING, SOURCE, f"standby {name} lags {lag:.0f} s",
                    f"lag > {t.replication_lag_seconds} s ({KEY}replication_lag_seconds)", where=where,
                    details={"standby": name, "lag_seconds": lag})
            for name, lag in sorted(lags.items()) if lag >= t.replication_lag_seconds]


def _cache(facts, t, env, where):
    out = []
    for d in facts.databases or []:
        ratio = d.cache_hit_ratio
        if ratio is None or d.blks_hit + d.blks_read < CACHE_MIN_BLOCKS or ratio * 100 >= t.cache_hit_percent:
            continue
        out.append(Finding(WARNING, SOURCE, f"database {d.name}: cache hit ratio {ratio * 100:.1f}%",
                           f"< {t.cache_hit_percent}% ({KEY}cache_hit_percent)", where=where,
                           details={"database": d.name, "blks_hit": d.blks_hit, "blks_read": d.blks_read}))
    return out


def _deadlocks(facts, t, env, where):
    hit = [d for d in facts.databases or [] if d.deadlocks]
    total = sum(d.deadlocks for d in hit)
    if total < t.deadlocks:
        return []
    parts = ", ".join(f"{d.name} {d.deadlocks}" + (f" since {iso(d.stats_reset)}" if d.stats_reset else "")
                      for d in hit)
    return [Finding(WARNING, SOURCE, f"{total} deadlock(s) since the statistics reset ({parts}); the server log"
                                     " names the statements", f">= {t.deadlocks} ({KEY}deadlocks)", where=where,
                    details={d.name: d.deadlocks for d in hit})]


def _xid_age(facts, t, env, where):
    out = []
    freeze = facts.freeze_max_age or 200_000_000
    critical_at = WRAPAROUND * t.xid_wraparound_percent / 100
    warning_at = freeze * t.xid_freeze_factor_percent / 100
    for d in facts.databases or []:
        if d.xid_age >= critical_at:
            severity, rule = CRITICAL, f">= {t.xid_wraparound_percent}% of 2^31 ({KEY}xid_wraparound_percent)"
        elif d.xid_age >= warning_at:
            severity, rule = WARNING, (f">= {t.xid_freeze_factor_percent}% of autovacuum_freeze_max_age {freeze}"
                                       f" ({KEY}xid_freeze_factor_percent)")
        else:
            continue
        out.append(Finding(severity, SOURCE, f"database {d.name}: transaction ID age {d.xid_age:,}"
                                             f" ({100 * d.xid_age / WRAPAROUND:.0f}% of wraparound); vacuum it",
                           rule, where=where, details={"database": d.name, "xid_age": d.xid_age}))
    return out


def _archiver(facts, t, env, where):
    a = facts.archiver
    if a is None or not a.failing:
        return []
    last_ok = iso(a.last_archived_time) if a.last_archived_time else "never"
    return [Finding(CRITICAL, SOURCE, f"WAL archiving is failing: {a.last_failed_wal} failed at"
                                      f" {iso(a.last_failed_time)} (last success {last_ok})",
                    "last_failed_time newer than last_archived_time (pg_stat_archiver)", runbook="backup.check",
                    command=f"inv backup.check --env {env}", where=where,
                    details={"failed_count": a.failed_count, "last_failed_wal": a.last_failed_wal})]


def _statements(facts, t, env, where):
    if not facts.statements or not t.top_statements:
        return []
    top = facts.statements[: t.top_statements]
    first = top[0]
    return [Finding(INFO, SOURCE, f"top statement by total time: {first.total_ms / 1000:.1f} s in {first.calls}"
                                  f" calls: {shown_query(first.query, 80)!r}",
                    f"top {t.top_statements} of pg_stat_statements ({KEY}top_statements)", where=where,
                    details={"statements": [{"queryid": s.queryid, "calls": s.calls, "total_ms": round(s.total_ms, 1),
                                             "mean_ms": round(s.mean_ms, 3), "rows": s.rows,
                                             "query": shown_query(s.query)} for s in top]})]
