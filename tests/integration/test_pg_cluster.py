"""LocalCluster against real PostgreSQL 15: idempotent init/configure, start/stop, archiving off."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys

import pytest

from aep_ops.base.errors import HostUnreachable, StepFailed, UsageError, VerificationFailed
from aep_ops.pg import facts
from aep_ops.pg.cluster import LocalCluster
from aep_ops.pg.connect import connect
from aep_ops.testing import ports, postgres
from aep_ops.testing.postgres import TEST_SETTINGS, free_port

OTHER_SESSION = "from aep_ops.testing.ports import free_port; print(*[free_port() for _ in range(30)])"


def test_init_is_idempotent_and_start_stop_report_what_they_did(pg_cluster_factory):
    cluster = pg_cluster_factory.blank("cluster").cluster
    assert not cluster.exists()
    assert cluster.init(TEST_SETTINGS, sync=False) is True
    st = os.stat(cluster.datadir)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == pwd_uid("postgres")
    assert cluster.init(TEST_SETTINGS, sync=False) is False, "second init changes nothing"

    assert not cluster.is_running()
    assert cluster.start() is True
    assert cluster.start() is False, "already running"
    assert cluster.is_running() and cluster.postmaster_pid()
    with cluster.connect() as conn:
        assert facts.setting(conn, "port") == str(cluster.port)
        assert facts.setting(conn, "listen_addresses") == "127.0.0.1"
        assert facts.is_in_recovery(conn) is False
    assert cluster.stop() is True
    assert cluster.stop() is False, "already stopped"
    assert not cluster.is_running() and cluster.postmaster_pid() is None


def test_configure_is_idempotent_and_applies_on_restart(pg_cluster):
    cluster = pg_cluster.cluster
    assert cluster.configure(pg_cluster.settings) is False
    wanted = {**pg_cluster.settings, "work_mem": "8MB", "cluster_name": "aep's drill"}
    assert cluster.configure(wanted) is True
    assert cluster.configure(wanted) is False
    assert cluster.current_settings()["cluster_name"] == "aep's drill"
    cluster.stop()
    cluster.start()
    assert pg_cluster.sql("show work_mem") == [("8MB",)]
    assert pg_cluster.sql("show cluster_name") == [("aep's drill",)]


def test_disable_archiving_wins_over_postgresql_auto_conf(pg_cluster):
    pg_cluster.sql("alter system set archive_mode = 'on'")
    pg_cluster.sql("alter system set archive_command = '/bin/false %p'")
    cluster = pg_cluster.cluster
    assert cluster.disable_archiving() is True
    assert cluster.disable_archiving() is False
    assert "archive" not in (cluster.datadir / "postgresql.auto.conf").read_text()
    cluster.stop()
    cluster.start()
    assert pg_cluster.sql("show archive_mode") == [("off",)]
    applied = pg_cluster.sql("select setting from pg_file_settings where name = 'archive_command' and applied")
    assert applied == [("",)]


def test_wait_for_promotion_on_a_primary_demands_proof_of_a_recovery_target(pg_cluster):
    facts_ = pg_cluster.cluster.wait_for_promotion(timeout=10, expect_target=False)
    assert facts_.timeline == 1 and facts_.stop_line is None and facts_.last_replayed_commit is None
    with pytest.raises(VerificationFailed, match="never logged 'recovery stopping"):
        pg_cluster.cluster.wait_for_promotion(timeout=10)


def test_a_failed_start_names_the_log_line(pg_cluster):
    cluster = pg_cluster.cluster
    cluster.stop()
    cluster.configure({**pg_cluster.settings, "shared_buffers": "banana"})
    with pytest.raises(StepFailed, match='invalid value for parameter "shared_buffers"'):
        cluster.start(timeout=20)
    cluster.configure(pg_cluster.settings)
    assert cluster.start() is True


def test_init_refuses_a_data_dir_postgres_cannot_reach(tmp_path):
    # pytest's tmp_path is 0700 root: exactly the trap.
    cluster = LocalCluster(tmp_path / "data", free_port(), tmp_path / "sock")
    with pytest.raises(UsageError, match="postgres cannot traverse"):
        cluster.init(TEST_SETTINGS, sync=False)
    assert not (tmp_path / "data").exists()


def test_connect_errors_never_contain_the_password():
    port = free_port()
    with pytest.raises(HostUnreachable) as caught:
        connect(f"host=127.0.0.1 port={port} user=ops password=s3cr3t-value dbname=aep", connect_timeout=2)
    assert "s3cr3t-value" not in str(caught.value)
    assert f"ops@127.0.0.1:{port}/aep" in str(caught.value)


def _stranger(port: int, address: str = "127.0.0.1") -> socket.socket:
    """Another program listening on ``address:port`` (non-blocking: accept() says if anyone came)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((address, port))
    sock.listen(8)
    sock.setblocking(False)
    return sock


def _nobody_came(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def test_free_ports_are_outside_the_ephemeral_range_and_never_given_twice_even_to_another_session():
    low, high = ports.ephemeral_range()
    mine = [free_port() for _ in range(30)]
    assert len(set(mine)) == 30
    assert not [p for p in mine if low <= p <= high], "an ephemeral port can be taken by any outgoing connection"
    assert all(ports.bindable("127.0.0.1", p) for p in mine)
    other = subprocess.run([sys.executable, "-c", OTHER_SESSION], capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr
    theirs = {int(p) for p in other.stdout.split()}
    assert len(theirs) == 30 and not theirs & set(mine), "a concurrent session took ports this one holds"


def test_a_port_another_program_listens_on_is_skipped(monkeypatch, tmp_path):
    taken, taken6, spare = free_port(), free_port(), free_port()  # locked by us: no one else's
    monkeypatch.setattr(ports, "LOCK_DIR", tmp_path)  # a fresh allocator over just these three
    fresh: dict[str, int] = {}
    monkeypatch.setattr(ports, "_held", fresh)
    monkeypatch.setattr(ports, "candidate_ports", lambda: [taken, taken6, spare])
    listeners = []
    try:
        listeners.append(_stranger(taken))
        try:
            listeners.append(_stranger(taken6, "::1"))  # nginx listens there too: localhost may be ::1
        except OSError:  # no IPv6 loopback on this host
            listeners.append(_stranger(taken6))
        assert free_port() == spare
    finally:
        for sock in listeners:
            sock.close()
        for fd in fresh.values():
            os.close(fd)


def test_a_cluster_on_a_port_another_program_holds_fails_to_start_and_talks_to_no_one(pg_cluster_factory):
    tc = pg_cluster_factory.blank("taken")
    stranger = _stranger(tc.port)
    try:
        tc.cluster.init(TEST_SETTINGS, sync=False)
        with pytest.raises(StepFailed, match="could not create any TCP/IP sockets"):
            tc.cluster.start(timeout=20)
        assert tc.cluster.postmaster_pid() is None
        assert _nobody_came(stranger)
    finally:
        stranger.close()


def test_the_fixture_moves_a_cluster_whose_port_was_taken_after_the_check(pg_cluster_factory, monkeypatch):
    taken, spare = free_port(), free_port()
    stranger = _stranger(taken)  # took the port between the allocator's check and the start
    handed = iter([taken, spare])
    monkeypatch.setattr(postgres, "free_port", lambda: next(handed))
    try:
        tc = pg_cluster_factory.make(name="moved")
        assert tc.port == spare and tc.sql("show port") == [(str(spare),)]
        assert _nobody_came(stranger), "nothing connected to the other program"
    finally:
        stranger.close()


def pwd_uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


