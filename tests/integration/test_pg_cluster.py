"""LocalCluster against real PostgreSQL 15: idempotent init/configure, start/stop, archiving off."""

from __future__ import annotations

import os
import stat

import pytest

from aep_ops.errors import HostUnreachable, StepFailed, UsageError, VerificationFailed
from aep_ops.pg import facts
from aep_ops.pg.cluster import LocalCluster
from aep_ops.pg.connect import connect
from aep_ops.testing.postgres import TEST_SETTINGS, free_port


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


def pwd_uid(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_uid


