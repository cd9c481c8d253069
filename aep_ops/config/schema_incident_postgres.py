"""The database's thresholds in incident diagnostics (``incident.postgres:`` of an environment).
The defaults are in aep_ops.incident.postgres_rules.PostgresThresholds."""

from __future__ import annotations

from aep_ops.config.schema import DAY, Field, Section

POSTGRES = Section({
    "connections_percent": Field(int, "client connections as a percent of max_connections minus"
                                      " superuser_reserved_connections that warns (default 80)",
                                 minimum=1, maximum=100),
    "connections_critical_percent": Field(int, "the same percent that is critical (default 95)",
                                          minimum=1, maximum=100),
    "blocked_seconds": Field(int, "a session waiting this long for a lock makes its root blocker critical"
                                  " (default 30)", minimum=1, maximum=DAY),
    "idle_in_transaction_seconds": Field(int, "a session idle in a transaction this long is reported"
                                              " (default 300)", minimum=1, maximum=7 * DAY),
    "long_query_seconds": Field(int, "an active query running this long is reported (default 300)",
                                minimum=1, maximum=7 * DAY),
    "replication_lag_seconds": Field(int, "replication lag of a standby that warns (default 60)",
                                     minimum=1, maximum=7 * DAY),
    "cache_hit_percent": Field(int, "buffer cache hit ratio of a database below which it warns (default 90)",
                               minimum=1, maximum=100),
    "deadlocks": Field(int, "deadlocks since the statistics reset, in any database, that warn (default 1)",
                       minimum=1, maximum=10**9),
    "xid_freeze_factor_percent": Field(int, "age(datfrozenxid) as a percent of autovacuum_freeze_max_age that"
                                            " warns: autovacuum is not keeping up (default 150)",
                                       minimum=100, maximum=1000),
    "xid_wraparound_percent": Field(int, "age(datfrozenxid) as a percent of the 2^31 wraparound limit that is"
                                         " critical (default 50)", minimum=1, maximum=100),
    "query_timeout_ms": Field(int, "statement_timeout of each diagnostic query (default 5000)",
                              minimum=100, maximum=600_000),
    "top_statements": Field(int, "statements listed from pg_stat_statements when it is installed (default 5;"
                                 " 0: none)", minimum=0, maximum=100),
})
