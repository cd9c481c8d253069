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


@pytest.fixture(scope="module")
def slack_api():
    """A local Slack Web API (aep_ops/testing/slack_api.py) shared by a module's tests: the chat
    service posts its replies there, and the tests read them back."""
    from aep_ops.testing.slack_api import SlackApi

    server = SlackApi()
    yield server
    server.close()


# The release.* tests: blue and green app processes behind a real nginx that routes as a moto ALB
# listener says (aep_ops/testing/alb_nginx.py).
from aep_ops.testing.alb_nginx import release_alb, release_apps  # noqa: E402, F401
