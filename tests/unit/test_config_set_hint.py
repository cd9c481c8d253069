"""``--set`` keys as the runbooks write them (``drill.smoke_queries``: the environment's key), and the
nearest valid key for a typo, for flags and for AEP_OPS_* variables."""

from __future__ import annotations

import pytest

from aep_ops import config
from aep_ops.base.errors import ConfigError


def test_the_environment_relative_form_sets_the_runs_environment():
    settings = config.load(None, ["drill.smoke_queries=select 1 from users", "drill.scale=3"])
    assert settings.env["drill"] == {"smoke_queries": ["select 1 from users"], "scale": 3}
    assert settings.sources["environments.local.drill.scale"] == "--set drill.scale"
    prod = config.load("prod", ["drill.scale=4"])
    assert prod.env["drill"]["scale"] == 4 and "drill" not in prod.data["environments"]["local"]


def test_the_relative_form_is_checked_like_the_full_one():
    with pytest.raises(ConfigError) as err:
        config.load(None, ["drill.scale=5000"])
    assert str(err.value) == ("--set drill.scale: 'environments.local.drill.scale' is 5000;"
                              " expected a whole number from 1 to 1000")


@pytest.mark.parametrize("typed, meant", [
    ("drill.smoke_querys", "drill.smoke_queries"),
    ("smoke_queries", "drill.smoke_queries"),
    ("log.levl", "log.level"),
    ("environments.local.drill.scal", "environments.local.drill.scale"),
    ("environments.prod.drill.smoke_querys", "environments.prod.drill.smoke_queries"),
    ("backup.retention", "backup.retention_full"),
])
def test_an_unknown_key_names_the_nearest_valid_key(typed, meant):
    with pytest.raises(ConfigError) as err:
        config.load(None, [f"{typed}=1"])
    assert str(err.value) == (f"--set {typed}: unknown key '{typed}'; did you mean {meant}?"
                              " (see `inv config.show`)")


def test_an_unknown_variable_names_the_nearest_variable(monkeypatch):
    monkeypatch.setenv("AEP_OPS_LOG__LEVL", "debug")
    with pytest.raises(ConfigError) as err:
        config.load()
    assert str(err.value) == ("environment variable AEP_OPS_LOG__LEVL: unknown key 'log.levl';"
                              " did you mean AEP_OPS_LOG__LEVEL? (see `inv config.show`)")


def test_a_key_like_nothing_says_where_to_look():
    with pytest.raises(ConfigError) as err:
        config.load(None, ["zzqx=1"])
    assert str(err.value) == "--set zzqx: unknown key 'zzqx' (see `inv config.show`)"
