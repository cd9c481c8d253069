"""The release tests' data path on its own: real blue and green app processes, a real nginx that
routes as a moto ALB listener says, steady load through it (aep_ops/testing/release_app.py,
alb_nginx.py, load.py). The release.* runbook tests stand on these properties."""

from __future__ import annotations

import threading
import time

import pytest

from aep_ops.base.processes import stat_fields
from aep_ops.testing.alb_nginx import AlbNginx, Server, make_alb, upstream_servers
from aep_ops.testing.load import LoadDriver
from aep_ops.testing.release_app import start_app

SINK = ("127.0.0.1", 1)


@pytest.mark.parametrize("weights, targets, expected", [
    ({"b": 100, "g": 0}, {"b": [("127.0.0.1", 11)], "g": [("127.0.0.1", 12)]}, [(11, 1)]),
    ({"b": 80, "g": 20}, {"b": [("127.0.0.1", 11)], "g": [("127.0.0.1", 12)]}, [(11, 4), (12, 1)]),
    # a group's share does not grow with its target count: 50/50 over 2 + 1 targets is 1:1:2
    ({"b": 50, "g": 50}, {"b": [("127.0.0.1", 11), ("127.0.0.1", 13)], "g": [("127.0.0.1", 12)]},
     [(11, 1), (13, 1), (12, 2)]),
    ({"b": 90, "g": 10}, {"b": [("127.0.0.1", 11)], "g": []}, [(11, 9), (1, 1)]),  # no targets: the 503 sink
    ({"b": 0, "g": 0}, {"b": [("127.0.0.1", 11)], "g": [("127.0.0.1", 12)]}, [(1, 1)]),
])
def test_alb_weights_become_nginx_weights_in_proportion(weights, targets, expected):
    servers = upstream_servers(weights, targets, SINK)
    assert [(s.port, s.weight) for s in servers] == expected


def test_switch_under_steady_load_fails_no_request(release_alb):
    data_path = release_alb.data_path
    with LoadDriver(release_alb.url, threads=4, rate=50) as load:
        load.wait_count(50)
        changed = time.monotonic()
        release_alb.set_weights(blue=0, green=100)
        applied = data_path.wait_applied(release_alb.weights(0, 100), timeout=5)  # the bound (~0.2-0.4 s seen)
        load.wait_count(100, since=applied.at)
    before = [s.colour for s in load.samples() if s.started < changed]
    assert before and set(before) == {"blue"}
    after = load.by_colour(since=applied.at)
    assert set(after) == {"green"} and after["green"] >= 100
    assert load.failures() == [], f"{len(load.failures())} of {load.count()} requests failed"
    assert applied.generation == 2  # one reload: the listener changed once


def test_weights_80_20_split_traffic_about_4_to_1(release_alb):
    release_alb.set_weights(blue=80, green=20)
    applied = release_alb.data_path.wait_applied(release_alb.weights(80, 20), timeout=5)
    assert [s.weight for s in applied.servers] == [4, 1]
    with LoadDriver(release_alb.url, threads=4) as load:
        load.wait_count(500)
    colours = load.by_colour()
    assert load.failures() == []
    assert 0.72 <= colours["blue"] / load.count() <= 0.88, colours


def test_degraded_green_answers_half_500_and_counts_them(release_alb):
    green = release_alb.apps["green"]
    release_alb.set_weights(blue=0, green=100)
    release_alb.data_path.wait_applied(release_alb.weights(0, 100), timeout=5)
    counted = green.counts()
    green.degrade(0.5)
    with LoadDriver(release_alb.url, threads=4) as load:
        load.wait_count(200)
    now = green.counts()
    served = {code: now[code] - counted.get(code, 0) for code in now}
    failures = load.failures()
    assert {(s.status, s.colour) for s in failures} == {(500, "green")}
    assert served[500] == len(failures) and served[200] + served[500] == load.count()
    assert abs(served[500] - load.count() / 2) <= 1  # evenly spread: every second request
    green.degrade(0)
    assert release_alb.apps["green"].counts()[500] == now[500]  # /metrics itself is not counted


def test_stop_leaves_no_process_and_no_thread(moto_account):
    apps = [start_app("blue"), start_app("green")]
    elbv2 = moto_account.client("elbv2")
    arns = make_alb(elbv2, moto_account.client("ec2"), [apps[0].port], [apps[1].port])
    data_path = AlbNginx(elbv2, arns["listener"]).start()
    first = data_path.pids()  # the master and its first worker
    try:
        with LoadDriver(data_path.url, threads=4) as load:
            load.wait_count(20)
            elbv2.deregister_targets(TargetGroupArn=arns["blue"], Targets=[{"Id": "127.0.0.1", "Port": apps[0].port}])
            applied = data_path.wait_synced(timeout=5)  # blue has no target left: the sink answers 503
            assert applied.servers == (Server("127.0.0.1", data_path.sink_port, 1),)
            load.wait_count(20, since=applied.at)
        assert {s.status for s in load.samples(since=applied.at)} == {503}
        nginx = set(first) | set(data_path.pids())
        assert len(nginx) >= 3  # the master, the worker before the reload and the one after
        pids = [*(app.pid for app in apps), *nginx]
    finally:
        data_path.stop()
        for app in apps:
            app.stop()
    assert [pid for pid in pids if stat_fields(pid) is not None] == []  # gone and reaped, no zombie
    ours = [t.name for t in threading.enumerate() if t.name.startswith(("alb-nginx-sync", "load-driver"))]
    assert ours == []
