"""pytest fixtures that start real PostgreSQL 15 clusters (optionally archiving with pgBackRest).

Clusters live under /tmp/aep-pg-*/ (owned by postgres, 0700): pytest's tmp_path is 0700
root, which the postgres user cannot traverse. Each gets a port from ``ports.free_port`` (outside
the ephemeral range, locked for this session; re-exported here), its own socket
directory and log, and is stopped and removed at teardown. Missing binaries are an error
that says to run ``make test``, never a skip: a test that skips in CI is a fixture bug.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from aep_ops.base.errors import StepFailed, ToolMissing
from aep_ops.pg import fsutil
from aep_ops.pg.bin import require
from aep_ops.pg.cluster import LocalCluster
from aep_ops.pg.pgbackrest import PGBACKREST, PgBackRest, PgBackRestConfig
from aep_ops.base.netports import port_taken
from aep_ops.testing.ports import free_port

OS_USER = "postgres"
# Test clusters only: fsync=off trades crash safety for speed.
TEST_SETTINGS = {"shared_buffers": "32MB", "fsync": "off", "max_connections": "30", "max_wal_size": "256MB"}
ARCHIVE_SETTINGS = {
    "wal_level": "replica", "archive_mode": "on", "archive_timeout": "30s", "track_commit_timestamp": "on",
}


@dataclass
class TestCluster:
    """A started cluster plus its scratch directory; attribute access falls through to LocalCluster."""

    __test__ = False  # not a pytest test class

    cluster: LocalCluster
    base: Path
    pgbackrest: PgBackRest | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return self.cluster.dsn()

    @property
    def port(self) -> int:
        return self.cluster.port

    @property
    def datadir(self) -> Path:
        return self.cluster.datadir

    def sql(self, query: Any, params: Any = None, *, dbname: str = "postgres") -> list[tuple]:
        """Run one statement in its own autocommitted transaction; return its rows (or [])."""
        with self.cluster.connect(dbname) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "cluster":
            raise AttributeError(name)
        return getattr(self.cluster, name)


class ClusterFactory:
    """``make(archive=False | 'pgbackrest', settings={...})`` -> a started TestCluster."""

    def __init__(self) -> None:
        self._clusters: list[TestCluster] = []

    def __call__(
        self, archive: bool | str = False, settings: Mapping[str, Any] | None = None, **kw: Any
    ) -> TestCluster:
        return self.make(archive, settings, **kw)

    def make(
        self, archive: bool | str = False, settings: Mapping[str, Any] | None = None, *, name: str = "pg"
    ) -> TestCluster:
        _require_binaries(pgbackrest=archive == "pgbackrest")
        tc = self.blank(name)
        desired = {**TEST_SETTINGS, **(settings or {})}
        if archive == "pgbackrest":
            tc.pgbackrest = _pgbackrest_for(tc)
            desired = {**TEST_SETTINGS, **ARCHIVE_SETTINGS, "archive_command": tc.pgbackrest.archive_command(),
                       **(settings or {})}
        elif archive:
            raise ValueError(f"archive must be False or 'pgbackrest', not {archive!r}")
        tc.settings = desired
        tc.cluster.init(desired, sync=False)
        _start_on_free_port(tc)
        if tc.pgbackrest is not None:
            tc.pgbackrest = _pgbackrest_for(tc)  # the port may have changed
            tc.pgbackrest.ensure_dirs()
            tc.pgbackrest.write_config()
            tc.pgbackrest.stanza_create()
        return tc

    def blank(self, name: str = "restored") -> TestCluster:
        """Directories, port and a LocalCluster that is NOT initialized (e.g. a restore target).

        It is stopped and removed at teardown like the others.
        """
        base = Path(tempfile.mkdtemp(prefix=f"aep-pg-{name}-", dir="/tmp"))
        fsutil.ensure_dir(base, owner=OS_USER, mode=0o700)
        cluster = LocalCluster(base / "data", free_port(), base / "sock", os_user=OS_USER, logfile=base / "server.log")
        tc = TestCluster(cluster=cluster, base=base)
        self._clusters.append(tc)
        return tc

    def close(self) -> None:
        errors = []
        for tc in reversed(self._clusters):
            try:
                tc.cluster.stop(mode="immediate", timeout=30)
            except Exception as exc:  # noqa: BLE001 - keep tearing down the others
                errors.append(f"{tc.cluster}: {exc}")
            shutil.rmtree(tc.base, ignore_errors=True)
        self._clusters.clear()
        if errors:
            raise StepFailed("could not stop test clusters: " + "; ".join(errors))


def _start_on_free_port(tc: TestCluster, attempts: int = 3) -> None:
    """Start, moving to another port when someone outside the allocator's locks took this one
    between the check and the start (the error never names "already in use": match its FATAL)."""
    for attempt in range(attempts):
        try:
            tc.cluster.start(timeout=60)
            return
        except StepFailed as exc:
            if not port_taken(str(exc)) or attempt == attempts - 1:
                raise
            tc.cluster.port = free_port()
            tc.cluster.configure(tc.settings)


def _pgbackrest_for(tc: TestCluster) -> PgBackRest:
    pb = tc.base / "pgbackrest"
    return PgBackRest(
        PgBackRestConfig(
            stanza="aep",
            config_path=str(tc.base / "pgbackrest.conf"),
            repo1_path=str(pb / "repo"),
            log_path=str(pb / "log"),
            lock_path=str(pb / "lock"),
            spool_path=str(pb / "spool"),
            pg1_path=str(tc.cluster.datadir),
            pg1_port=tc.cluster.port,
            pg1_socket_path=str(tc.cluster.socket_dir),
            process_max=2,
        ),
        os_user=OS_USER,
    )


def _require_binaries(*, pgbackrest: bool) -> None:
    try:
        require(("initdb", "pg_ctl", "postgres"))
    except ToolMissing as exc:
        raise ToolMissing(f"{exc}. Run `make test`: it installs PostgreSQL 15 and pgBackRest") from None
    if pgbackrest and not Path(PGBACKREST).is_file():
        raise ToolMissing(f"pgBackRest not found at {PGBACKREST}. Run `make test`: it installs it")


@pytest.fixture
def pg_cluster_factory() -> Iterator[ClusterFactory]:
    """Function-scoped factory of started clusters, all stopped and removed at teardown."""
    factory = ClusterFactory()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def pg_cluster(pg_cluster_factory: ClusterFactory) -> TestCluster:
    """One started, non-archiving PostgreSQL 15 cluster."""
    return pg_cluster_factory.make()


def stop_clusters_under(base: Path) -> None:
    """Stop every PostgreSQL server whose data directory lies under ``base`` (test teardown:
    runbooks start clusters that no fixture object knows about)."""
    from aep_ops.executors.local import LocalExecutor
    from aep_ops.pg.bin import pg_bin

    # os.walk, not rglob: a drill's detached `rm -rf` may be deleting a discarded copy meanwhile,
    # and os.walk skips directories that vanish under it (rglob raised FileNotFoundError).
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".removing-")]  # stopped, being deleted
        if "postmaster.pid" in filenames:
            LocalExecutor().run([pg_bin("pg_ctl"), "-D", dirpath, "-m", "immediate", "-w", "stop"],
                                user=OS_USER, timeout=60, cwd="/")
