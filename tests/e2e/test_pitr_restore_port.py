"""A restored copy's port is chosen before the restore and used after it, which on a real
database can be an hour later: whatever took the port meanwhile must not fail the restore.
Real PostgreSQL, real pgBackRest, a real listener on the port."""

from __future__ import annotations

import json
import socket
from contextlib import contextmanager
from typing import Iterator

from aep_ops import config
from aep_ops.base import netports
from aep_ops.db import locations
from aep_ops.db.backends import local
from tests.support.pitr_source import labels, target_between
from tests.support.restore_freeze import restore_held_mid_write, thaw


@contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    """Another server on 127.0.0.1:PORT, as long as the block runs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield sock


def test_a_port_taken_during_the_restore_moves_the_copy_to_another(cli, source, local_env):
    """pgBackRest is held still mid-restore; a listener takes the port restore.json recorded; the
    restore goes on, the copy starts on another port, says so, and restore.json and the DSN name it."""
    target, kept = target_between(source, ["before"], ["after"])
    with restore_held_mid_write(local_env, target, "moved") as held:
        chosen = json.loads((held.datadir.parent / "restore.json").read_text())["port"]
        assert chosen != source.cluster.port
        low, high = netports.ephemeral_range()
        assert not low <= chosen <= high, f"port {chosen} is in the ephemeral range {low}-{high}"
        with listening(chosen):
            thaw(held.frozen)
            assert held.proc.wait(timeout=240) == 0, held.log.read_text()[-3000:]
        output = held.log.read_text()
    meta = json.loads((held.datadir.parent / "restore.json").read_text())
    moved_to = meta["port"]
    assert moved_to != chosen and meta["status"] == "promoted"
    assert f"port {chosen} is taken; the copy moves to port {moved_to}" in output
    assert f"port={moved_to} " in meta["dsn"] + " " and labels(meta["dsn"]) == kept
    listed = [c for c in json.loads(cli("pitr.list", "--json", check_rc=0).stdout) if c["name"] == "moved"]
    assert [(c["port"], c["dsn"]) for c in listed] == [(moved_to, meta["dsn"])]


def test_a_start_that_finds_the_port_taken_moves_and_starts_again(cli, source, local_env, monkeypatch):
    """The race the check before the start cannot close: the port is free when looked at and taken
    when PostgreSQL binds it. The check is made to miss the listener (that moment cannot be timed
    from outside); the start then fails for real, with PostgreSQL's own error, and moves."""
    target, kept = target_between(source, ["before"], ["after"])
    cli("pitr.restore", "--target-time", target.isoformat(), "--name", "raced", check_rc=0, timeout=300)
    when = target.isoformat()
    settings = config.load("local")
    copy = locations.restored_copy(settings, "raced")
    cluster = copy.cluster(settings)
    cluster.stop(mode="fast")
    port = copy.meta["port"]
    looks = iter([True])
    monkeypatch.setattr(netports, "free_on_loopback", lambda p: next(looks, netports.bindable("127.0.0.1", p)))
    said: list[str] = []
    with listening(port):
        started_on = local._start_copy(settings, locations.local_db(settings), copy, cluster, 60, said.append,
                                       when)
    try:
        cluster.wait_for_promotion(timeout=60, expect_target=False)  # up, and a primary, as restore() waits
        assert started_on != port and locations.restored_copy(settings, "raced").meta["port"] == started_on
        assert said == [f"starting the copy on port {port} and replaying WAL to {when}",
                        f"port {port} is taken; the copy moves to port {started_on}",
                        f"starting the copy on port {started_on} and replaying WAL to {when}"]
        assert labels(cluster.dsn(source.dbname)) == kept
    finally:
        cluster.stop(mode="immediate")
