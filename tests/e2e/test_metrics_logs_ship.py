"""logs.ship's metrics from real runs (sshd hosts, logrotate, S3 on the moto server): the files and
bytes it shipped, none failed, none pending; a second run ships nothing and says so."""

from __future__ import annotations

import json

import pytest

from aep_ops.metrics import textfile
from tests.support.log_fleet import configured_log_fleet, next_second


@pytest.fixture
def fleet(ssh_host_factory, moto_account, tmp_path, monkeypatch):
    with configured_log_fleet(1, ssh_host_factory, moto_account, tmp_path, monkeypatch) as fleet:
        yield fleet


def _values(state_dir):
    return {s.name: s.value for s in textfile.read(state_dir / "metrics" / "aep_ops_logs_staging.prom")
            if s.labels == {"env": "staging"}}


def test_logs_ship_writes_shipped_and_pending(fleet, cli, state_dir):
    fleet.start_writers(rate=2000)
    next_second()
    cli("logs.rotate", "--env", "staging", check_rc=0)
    fleet.stop_writers()
    shipped = json.loads(cli("logs.ship", "--env", "staging", "--json", check_rc=0).stdout)["shipped"]
    assert shipped, "logrotate rotated a file to ship"
    assert _values(state_dir) == {"aep_ops_logs_shipped_files": len(shipped),
                                  "aep_ops_logs_shipped_bytes": sum(e["size"] for e in shipped),
                                  "aep_ops_logs_failed_files": 0, "aep_ops_logs_pending_files": 0}
    cli("logs.ship", "--env", "staging", check_rc=0)
    assert _values(state_dir) == {"aep_ops_logs_shipped_files": 0, "aep_ops_logs_shipped_bytes": 0,
                                  "aep_ops_logs_failed_files": 0, "aep_ops_logs_pending_files": 0}
