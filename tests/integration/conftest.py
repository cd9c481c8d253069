"""Fixtures shared by the integration tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from aep_ops.testing.postgres import free_port, stop_clusters_under
from tests.conftest import BIN, REPO
from tests.support.processes import kill_matching


# The backup.* tests: a seeded, backed-up local source, real PostgreSQL 15 and pgBackRest.
# Module-scoped: each test file gets its own (db.setup takes ~7 s), so no file depends on what
# another left behind; within a file, tests run in order and each leaves the source healthy.


@pytest.fixture(scope="module")
def source_env():
    """A state dir under /tmp (0755: the postgres user must traverse it) with a seeded, backed-up source."""
    base = Path(tempfile.mkdtemp(prefix="aep-backup-test-"))
    base.chmod(0o755)
    env = {"AEP_OPS_STATE_DIR": str(base), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT": str(free_port()),
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT": "5",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__SETTINGS__FSYNC": "off"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")}
    try:
        setup = subprocess.run([str(BIN / "inv"), "db.setup"], cwd=REPO, capture_output=True, text=True,
                               env={**clean, **env, "PYTHONPATH": str(REPO)}, timeout=180)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        yield env
    finally:
        stop_clusters_under(base)
        # pgBackRest's asynchronous archive-push outlives the cluster and would recreate its spool
        # directory under /tmp after the rmtree: stop what runs with this state dir's config first.
        kill_matching(f"--config={base}/pgbackrest/")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def source(source_env, isolated, monkeypatch) -> Path:
    for key, value in source_env.items():
        monkeypatch.setenv(key, value)
    return Path(source_env["AEP_OPS_STATE_DIR"])


@pytest.fixture
def rds_source(moto_account, pg_cluster):
    """A source RDS instance and a Route 53 zone in this test's own moto account, every instance
    mapped to one real, seeded PostgreSQL (tests/support/rds_staging.py)."""
    from tests.support.rds_staging import make_rds_source

    return make_rds_source(moto_account, pg_cluster)


# The release.* tests: blue and green app processes behind a real nginx that routes as a moto ALB
# listener says (aep_ops/testing/alb_nginx.py).
from aep_ops.testing.alb_nginx import release_alb, release_apps  # noqa: E402, F401
