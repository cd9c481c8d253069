"""Pure logic of patch.rolling: sizes, batches, capacity defaults, where a host resumes, and
the rollout state file (atomic, per-host transitions, failures keep the last good state)."""

from __future__ import annotations

import json
import types

import pytest

from aep_ops.base.errors import UsageError
from aep_ops.fleet.loadbalancer import load_balancer_for, waiter_config
from aep_ops.patch.host import PatchConfig, next_step
from aep_ops.patch.state import RolloutState, left_out_of_service, state_path
from aep_ops.patch.runbooks import chunk, min_healthy, parse_size, resolve_size, split_rollout


@pytest.mark.parametrize("text, total, zero_ok, expected", [
    ("1", 10, False, 1), ("3", 10, False, 3), ("25%", 10, False, 2), ("5%", 10, False, 1),
    ("100%", 7, False, 7), ("0", 10, True, 0), ("10%", 5, True, 0), ("50%", 5, True, 2), (" 2 ", 4, False, 2),
])
def test_sizes_are_counts_or_shares_rounded_down(text, total, zero_ok, expected):
    assert resolve_size(text, total, "--batch", zero_ok=zero_ok) == expected


@pytest.mark.parametrize("text, zero_ok", [("0", False), ("0%", False), ("101%", True), ("-1", True), ("a", True),
                                            ("1.5", True), ("", True)])
def test_bad_sizes_name_the_flag(text, zero_ok):
    with pytest.raises(UsageError, match="--batch"):
        parse_size(text, "--batch", zero_ok=zero_ok)


def test_batches_keep_inventory_order():
    assert chunk(["a", "b", "c", "d", "e"], 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert chunk([], 3) == []


def settings(production=False, patching=None, aws=None):
    env = {"production": production, "patching": patching or {}, "aws": aws or {}}
    return types.SimpleNamespace(env=env, env_name="prod" if production else "staging", production=production)


def test_min_healthy_defaults_to_two_in_production_and_one_elsewhere():
    assert min_healthy(settings(production=True)) == 2
    assert min_healthy(settings()) == 1
    assert min_healthy(settings(production=True, patching={"min_healthy": 4})) == 4
    assert min_healthy(settings(patching={"min_healthy": 0})) == 0


def test_patch_config_defaults_are_non_interactive_apt_and_overridable():
    default = PatchConfig.from_settings(settings())
    assert default.health_checks == 3 and default.upgrade_log == "/var/tmp/aep-ops-upgrade-{host}.log"
    custom = PatchConfig.from_settings(settings(patching={"upgrade_command": ["dnf", "-y", "upgrade"],
                                                          "health_checks": 5, "reboot_timeout": 60}))
    assert custom.upgrade_command == ("dnf", "-y", "upgrade") and custom.health_checks == 5
    assert custom.reboot_timeout == 60 and custom.pending_command == default.pending_command


def test_the_load_balancer_kind_is_configured_or_inferred():
    assert load_balancer_for(settings()).kind == "none"
    with pytest.raises(UsageError, match="target_group_arns"):
        load_balancer_for(settings(patching={"lb": "elbv2"}))
    with pytest.raises(UsageError, match="asg_name"):
        load_balancer_for(settings(patching={"lb": "asg"}))


def test_waits_poll_at_most_every_15s_and_cover_the_timeout():
    assert waiter_config(300) == {"Delay": 15.0, "MaxAttempts": 20}
    short = waiter_config(2)
    assert short["Delay"] == 0.2 and short["Delay"] * short["MaxAttempts"] >= 2


@pytest.mark.parametrize("entry, step", [
    ({"state": "pending"}, "check"), ({"state": "checked"}, "check"), ({"state": "drained"}, "upgrade"),
    ({"state": "upgraded"}, "reboot"), ({"state": "rebooted"}, "health"), ({"state": "healthy"}, "return"),
    ({"state": "failed", "last_ok": "rebooted", "failed_step": "health"}, "health"),
    ({"state": "failed", "last_ok": "pending", "failed_step": "check"}, "check"),
    ({"state": "failed", "last_ok": "drained", "failed_step": "upgrade"}, "upgrade"),
])
def test_a_host_resumes_after_its_last_completed_transition(entry, step):
    assert next_step(entry) == step


def new_state(tmp_path):
    hosts = [{"name": n, "address": f"10.0.0.{i}", "port": 22, "user": "root", "role": "api",
              "instance_id": f"i-{i}", "health_url": None} for i, n in enumerate(["a", "b", "c"], 1)]
    return RolloutState.create(state_path(tmp_path, "staging", "RUN1"), run_id="RUN1", env="staging", hosts=hosts,
                               canary=["a"], batches=[["b"]], up_to_date=["c"])


def test_state_file_records_transitions_and_failures_and_survives_a_reload(tmp_path):
    state = new_state(tmp_path)
    assert state.path == tmp_path / "patching" / "staging" / "RUN1.json"
    assert state.states() == {"a": "pending", "b": "pending", "c": "up_to_date"}
    state.transition("a", "checked", packages=["openssl"])
    state.transition("a", "drained")
    state.fail("a", "upgrade", "exit 100")
    state.fail("a", "upgrade", "exit 100 again")  # a failed retry keeps the last good state
    reloaded = RolloutState.load(state.path)
    entry = reloaded.host("a")
    assert (entry["state"], entry["failed_step"], entry["last_ok"]) == ("failed", "upgrade", "drained")
    assert entry["packages"] == ["openssl"]
    assert [h["state"] for h in entry["history"]] == ["checked", "drained", "failed", "failed"]
    assert reloaded.summary() == {"a": "failed at upgrade", "b": "pending", "c": "up_to_date"}
    assert set(reloaded.failed()) == {"a"} and reloaded.finished("c") and not reloaded.finished("a")
    reloaded.transition("a", "upgraded")
    assert "failed_step" not in reloaded.host("a") and reloaded.failed() == {}
    assert reloaded.hosts()["b"].instance_id == "i-2"
    assert not list(state.path.parent.glob(".*.tmp")), "writes are atomic: no temporary file left"
    assert json.loads(state.path.read_text())["batches"] == [["b"]]


def test_an_unreadable_state_file_is_an_actionable_error(tmp_path):
    path = state_path(tmp_path, "staging", "RUN2")
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(Exception, match="unreadable"):
        RolloutState.load(path)
    assert RolloutState.load(state_path(tmp_path, "staging", "nope")) is None


def test_hosts_an_earlier_run_left_drained_block_a_new_run(tmp_path):
    state = new_state(tmp_path)
    state.transition("b", "checked", packages=["openssl"])
    state.fail("b", "check", "unreachable")  # never drained: not blocking
    assert left_out_of_service(tmp_path, "staging", except_run="RUN9") == {}
    state.update("a", lb={"kind": "elbv2", "targets": []})
    state.transition("a", "drained")
    state.fail("a", "health", "HTTP 503")
    assert left_out_of_service(tmp_path, "staging", except_run="RUN9") == {"RUN1": ["a (failed at health)"]}
    assert left_out_of_service(tmp_path, "staging", except_run="RUN1") == {}, "its own resume is not blocked"
    state.transition("a", "done")
    assert left_out_of_service(tmp_path, "staging", except_run=None) == {}


@pytest.mark.parametrize("dpkg_status", [0, 2])
def test_the_default_upgrade_finishes_an_interrupted_dpkg_first_then_runs_apt_non_interactively(tmp_path, dpkg_status):
    """Run for real with recording stand-ins for dpkg and apt-get first on PATH (the real ones
    would upgrade this machine)."""
    import os
    import subprocess

    from aep_ops.patch.host import DEFAULT_UPGRADE

    calls = tmp_path / "calls"
    for tool, status in (("dpkg", dpkg_status), ("apt-get", 0)):
        stub = tmp_path / tool
        stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\nexit {status}\n')
        stub.chmod(0o755)
    proc = subprocess.run(list(DEFAULT_UPGRADE), env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})

    lines = calls.read_text().splitlines()
    assert lines[0] == "dpkg --force-confdef --force-confold --configure -a"
    if dpkg_status:
        assert proc.returncode == 2 and len(lines) == 1, "apt-get must not run over a broken dpkg"
    else:
        assert proc.returncode == 0 and lines[1] == ("apt-get -y -o Dpkg::Options::=--force-confdef"
                                                     " -o Dpkg::Options::=--force-confold"
                                                     " -o DPkg::Lock::Timeout=300 dist-upgrade")


def test_shares_of_batch_and_max_failed_count_against_all_hosts_of_the_rollout():
    """10 hosts, 4 to patch (3 with updates, 1 unreachable): 50% is 5 hosts for both flags,
    not 50% of the 4 to patch (which --max-failed used to count against)."""
    names = [f"h{i:02}" for i in range(1, 11)]
    pending = {n: ["openssl"] for n in ("h02", "h05", "h09")}
    split = split_rollout(names, pending, {"h07": "connection refused"}, canary=1, batch="50%", max_failed="50%")
    assert split["todo"] == ["h02", "h05", "h07", "h09"] and split["canary"] == ["h02"]
    assert split["batch_size"] == 5 and split["batches"] == [["h05", "h07", "h09"]]
    assert split["max_failed"] == 5
    assert split_rollout(names, pending, {}, canary=0, batch="10%", max_failed="20%")["max_failed"] == 2
    assert split_rollout(names, pending, {}, canary=0, batch="1", max_failed="3")["max_failed"] == 3
