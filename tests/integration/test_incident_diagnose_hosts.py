"""incident.diagnose's host sources against real sshd hosts, two of them hung: one accepts TCP and
never sends its SSH banner, one authenticates and never runs the command. The collection returns
while both are still held (proven by ordering, not by a stopwatch: fleet_hosts.call_while_held),
reports both as timed out next to the healthy host's facts, and leaves no thread and no process
behind."""

from __future__ import annotations

import os
import threading
import time

from aep_ops.config.settings import load
from aep_ops.fleet.inventory import hosts_for
from aep_ops.incident.collect import collect_all
from aep_ops.incident.settings import IncidentConfig
from aep_ops.incident.source_hosts import HostSource
from tests.support.fleet_hosts import call_while_held, wait_until
from tests.support.incident_fleet import add_silent, add_stalled, write_incident_config

DEADLINE = 3


def _children() -> set[int]:
    pid = os.getpid()
    found = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            pass
    return found


def _new_threads(before: set[threading.Thread]) -> list[str]:
    """Threads started since ``before`` and still running, but the silent host's own (the test's)."""
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive() and "_serve" not in t.name]


def test_hung_hosts_cost_their_deadline_and_leave_nothing_behind(ssh_host_factory, tmp_path, monkeypatch):
    good = ssh_host_factory()
    stalled, held = add_stalled(ssh_host_factory, tmp_path)
    silent = add_silent(ssh_host_factory, good)
    try:
        write_incident_config(tmp_path, monkeypatch, ssh_host_factory,
                              [("good", good, None), ("stalled", stalled, None), ("silent", silent, None)],
                              incident=f"      deadline_seconds: {DEADLINE}")
        settings = load("inc")
        cfg = IncidentConfig.from_settings(settings)
        sources = [HostSource(settings, h, cfg, since_seconds=1800) for h in hosts_for(settings)]
        assert all(s.executor.connect_timeout == DEADLINE for s in sources), "ssh.connect_timeout 30 capped"
        threads_before, children_before = set(threading.enumerate()), _children()

        def release() -> None:
            silent.release()
            held.release()

        results = call_while_held(lambda: collect_all(sources, deadline=DEADLINE, parallel=8), release,
                                  what="the collection returning at its deadline")
        assert silent.connections >= 1 and held.running(), "both hosts were held when the collection returned"
        by_name = {r.name: r for r in results}
        assert by_name["host:good"].status == "ok", by_name["host:good"]
        facts = by_name["host:good"].data
        assert facts["cpus"] >= 1 and facts["memory"]["total_kb"] > 0 and facts["disks"], facts
        assert facts["listening_ports"], "ss or netstat listed the listening ports"
        for name in ("host:stalled", "host:silent"):
            assert by_name[name].status == "timeout", by_name[name]
            assert by_name[name].elapsed <= DEADLINE + 1, by_name[name]
            assert "no answer within" in by_name[name].error
        # Aborted at the deadline, the workers end at once (not at paramiko's 15 s banner wait).
        wait_until(lambda: not _new_threads(threads_before), "every diagnosis thread ending", timeout=2)
        assert _children() <= children_before, "no local process started by the diagnosis is left"
    finally:
        held.release()
        silent.close()


def test_a_refused_host_is_an_error_with_its_reason_and_the_rest_answers(ssh_host_factory, tmp_path, monkeypatch):
    good, down = ssh_host_factory(), ssh_host_factory()
    down.stop()
    write_incident_config(tmp_path, monkeypatch, ssh_host_factory, [("good", good, None), ("down", down, None)],
                          incident=f"      deadline_seconds: {DEADLINE}")
    settings = load("inc")
    cfg = IncidentConfig.from_settings(settings)
    started = time.monotonic()
    results = collect_all([HostSource(settings, h, cfg, since_seconds=1800) for h in hosts_for(settings)],
                          deadline=DEADLINE, parallel=8)
    assert time.monotonic() - started < DEADLINE, "a refused connection is known at once, not at the deadline"
    assert [r.status for r in results] == ["ok", "error"]
    assert "Connection refused" in results[1].error
    assert results[1].findings[0].severity == "critical" and "unreachable" in results[1].findings[0].what
