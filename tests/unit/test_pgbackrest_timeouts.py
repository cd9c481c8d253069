"""pgBackRest's own deadlines come from `backup.timeouts` and reach pgbackrest.conf, so a repository
that does not answer fails with its name instead of hanging (issue 8, item 14)."""

from __future__ import annotations

import pytest

from aep_ops import config
from aep_ops.db import locations
from aep_ops.base.errors import UsageError
from aep_ops.pg.pgbackrest import Timeouts, render_config


def _conf_lines(settings) -> set[str]:
    cfg = locations.local_db(settings).backrest.config
    return set(render_config(cfg).splitlines())


def test_defaults_bound_every_wait_below_pgbackrests_own():
    lines = _conf_lines(config.load("local"))
    assert {"io-timeout=30", "db-timeout=1800", "protocol-timeout=1830", "archive-timeout=60"} <= lines


def test_configured_timeouts_reach_the_config_file_and_protocol_follows_db(monkeypatch):
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__TIMEOUTS__IO", "5")
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__TIMEOUTS__DB", "300")
    lines = _conf_lines(config.load("local"))
    assert {"io-timeout=5", "db-timeout=300", "protocol-timeout=330"} <= lines


def test_a_protocol_timeout_not_above_db_is_refused():
    with pytest.raises(UsageError, match=r"protocol-timeout \(60s\) must exceed db-timeout \(60s\)"):
        Timeouts.from_settings({"db": 60, "protocol": 60})


def test_a_timeout_out_of_range_is_a_config_error(monkeypatch):
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__TIMEOUTS__IO", "0")
    with pytest.raises(config.ConfigError, match="timeouts.io"):
        config.load("local")
