"""backup.check when repo2's S3 endpoint is down: it names the repository and the endpoint, fails
at pgBackRest's own deadline (not after minutes, not at an outer "did not finish within 120s"),
and WAL archiving to repo1 goes on. Real PostgreSQL 15 and pgBackRest; the endpoint is a real
socket that accepts connections and never answers (a hung or firewalled S3 front), or a port
where nothing listens (refused).
"""

from __future__ import annotations

import socket
import time

import pytest

from aep_ops import config
from aep_ops.backup.repo import segment_in_repo
from aep_ops.db import locations
from aep_ops.testing.s3tls import SilentEndpoint
from tests.support.backup_source import sql

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def pgbackrest_conf_restored(source):
    """Each test rewrites pgbackrest.conf with a dead repo2 (the source's archive_command reads it
    at every segment): put the module's own back afterwards, whatever the test did, so that no
    test depends on another having run first."""
    conf = source / "pgbackrest/pgbackrest.conf"
    original = conf.read_bytes()
    try:
        yield
    finally:
        with open(conf, "wb") as out:  # in place: the file keeps its owner (postgres) and mode 0600
            out.write(original)


def _point_repo2_at(port: int, monkeypatch) -> locations.LocalDb:
    """Configure repo2 on S3 at 127.0.0.1:PORT and rewrite pgbackrest.conf (the source's
    archive_command reads it at each segment), as `db.setup` would after a config change."""
    monkeypatch.setenv("AEP_TEST_S3_KEY", "AKIAAEPTEST")
    monkeypatch.setenv("AEP_TEST_S3_SECRET", "aep-test-secret")
    monkeypatch.setenv("AEP_TEST_CIPHER_PASS", "aep-test-cipher")
    prefix = "AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__S3__"
    for key, value in {"BUCKET": "aep-offsite", "ENDPOINT": "localhost", "PORT": str(port), "REGION": "eu-west-1",
                       "KEY": "env:AEP_TEST_S3_KEY", "KEY_SECRET": "env:AEP_TEST_S3_SECRET",
                       "CIPHER_PASS": "env:AEP_TEST_CIPHER_PASS"}.items():
        monkeypatch.setenv(prefix + key, value)
    # a dead repository fails after a few io-timeouts; 5 s (default 30) keeps the test short
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__TIMEOUTS__IO", "5")
    db = locations.local_db(config.load("local"))
    db.backrest.write_config()
    return db


def _refusing_socket() -> socket.socket:
    """Bound (the port is ours while the test runs) and never listening: connections are refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def _wait_in_repo1(db: locations.LocalDb, wal: str, timeout: float = 180) -> bool:
    deadline = time.monotonic() + timeout
    while not segment_in_repo(db, 1, wal):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_check_names_a_silent_repo2_and_repo1_keeps_receiving_wal(source, cli, monkeypatch):
    endpoint = SilentEndpoint()
    try:
        db = _point_repo2_at(endpoint.port, monkeypatch)
        conf = db.backrest.config
        assert "archive-async=y" in open(conf.config_path).read() and "io-timeout=5" in open(conf.config_path).read()

        checked = cli("backup.check", "--timeout", "30", timeout=300)
        assert checked.returncode == 5, checked.stdout + checked.stderr
        line = f"repo2 (S3 endpoint localhost:{endpoint.port}, bucket aep-offsite) does not answer"
        assert line in checked.stderr, checked.stderr[-2000:]
        assert f"timeout after 5000ms waiting for read from 'localhost:{endpoint.port}'" in checked.stderr, \
            "pgBackRest's own io-timeout ended it, not an outer deadline"
        assert "did not finish within" not in checked.stderr
        assert "repo1 answer(s) and still receive WAL" in checked.stderr
        assert endpoint.accepted > 0, "control: pgBackRest did reach the silent endpoint"
        assert "aep-test-secret" not in checked.stdout + checked.stderr

        sql(source, "select pg_logical_emit_message(false, 'aep-ops', 'repo2 down')")
        wal = sql(source, "select pg_walfile_name(pg_switch_wal())")[0][0]
        assert _wait_in_repo1(db, wal), f"WAL {wal} never reached repo1 while repo2 was down"
    finally:
        endpoint.close()


def test_check_names_a_refusing_repo2(source, cli, monkeypatch):
    with _refusing_socket() as refusing:
        port = refusing.getsockname()[1]
        _point_repo2_at(port, monkeypatch)
        checked = cli("backup.check", "--timeout", "30", timeout=300)
    assert checked.returncode == 5, checked.stdout + checked.stderr
    assert f"repo2 (S3 endpoint localhost:{port}, bucket aep-offsite) does not answer" in checked.stderr
    assert f"localhost:{port}" in checked.stderr.split("does not answer", 1)[1]
