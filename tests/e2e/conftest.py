"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import pytest

from aep_ops import config
from aep_ops.db import locations


@pytest.fixture
def source(cli, local_env):
    """The local AEP source, created through the CLI (the pitr.* tests)."""
    cli("db.setup", check_rc=0, timeout=300)
    return locations.local_db(config.load("local"))
