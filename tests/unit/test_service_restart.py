"""service.restart's pure parts: the unit name rule, the settings, where a host resumes, and the
per-host state machine driven with a recording executor and load balancer (no host, no network)."""

from __future__ import annotations

import types

import pytest

from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.executors.base import CommandResult
from aep_ops.fleet.inventory import Host
from aep_ops.patch.host import next_step
from aep_ops.patch.state import RolloutState, state_path
from aep_ops.service.host import AFTER, STEPS, HostRestart, ServiceConfig, unit_name
from aep_ops.service.runbooks import restart_order, short_of_capacity


def settings(**env):
    return types.SimpleNamespace(env=env, env_name="staging", production=False)


@pytest.mark.parametrize("name", ["aep-api", "aep-api.service", "aep-api@2.service", "x", "a:b_c"])
def test_plain_systemd_unit_names_pass(name):
    assert unit_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("", "is empty"), ("  ", "is empty"), ("-x", "begins with '-'"), ("--now", "begins with '-'"),
    ("x;rm", "cannot"), ("a b", "cannot"), ("$(id)", "cannot"), ("a/b", "cannot"), ("a\nb", "cannot"),
    ("x" * 257, "longer than 256"),
])
def test_anything_else_is_refused_naming_the_flag(name, why):
    with pytest.raises(UsageError, match="--unit") as err:
        unit_name(name)
    assert why in str(err.value)


def test_settings_defaults_overrides_and_the_flag_winning():
    default = ServiceConfig.from_settings(settings())
    assert default.restart_argv() == ("systemctl", "restart", "--", "aep-api") and default.batch == "1"
    cfg = ServiceConfig.from_settings(settings(service={
        "unit": "api.service", "restart_command": ["/opt/ctl", "bounce", "--", "{unit}"], "health_checks": 5,
        "health_timeout": 30, "batch": 2}))
    assert cfg.restart_argv() == ("/opt/ctl", "bounce", "--", "api.service")
    assert (cfg.health_checks, cfg.health_timeout, cfg.batch) == (5, 30, "2")
    assert ServiceConfig.from_settings(settings(service={"unit": "api"}), unit="other").unit == "other"
    with pytest.raises(ConfigError, match=r"environments.staging.service.unit '-x' begins with '-'"):
        ServiceConfig.from_settings(settings(service={"unit": "-x"}))


@pytest.mark.parametrize("entry, step", [
    ({"state": "pending"}, "drain"), ({"state": "drained"}, "restart"), ({"state": "restarted"}, "health"),
    ({"state": "healthy"}, "return"),
    ({"state": "failed", "last_ok": "restarted", "failed_step": "health"}, "health"),
    ({"state": "failed", "last_ok": "drained", "failed_step": "restart"}, "restart"),
    ({"state": "failed", "last_ok": "pending", "failed_step": "drain"}, "drain"),
])
def test_a_host_resumes_after_its_last_completed_transition(entry, step):
    assert next_step(entry, STEPS, AFTER, ()) == step


class Recorder:
    """An SSH executor and a load balancer that log what they were asked to do."""

    kind = "fake"

    def __init__(self, exit_status: int = 0):
        self.calls: list[tuple] = []
        self.exit_status = exit_status

    def run(self, argv, *, timeout=None, user=None, **_):
        self.calls.append(("run", tuple(argv), user))
        return CommandResult("root@10.0.0.1:22", tuple(argv), self.exit_status, "",
                             "Job for aep-api.service failed." if self.exit_status else "", 0.01)

    def close(self):
        pass

    def registration(self, host):
        self.calls.append(("registration", host.name))
        return {"kind": self.kind, "where": "tg-1"}

    def drain(self, host, record, timeout):
        self.calls.append(("drain", host.name, record["where"]))

    def restore(self, host, record, timeout):
        self.calls.append(("restore", host.name, record["where"]))


def drive(tmp_path, state: str | None = None, exit_status: int = 0):
    host = Host(name="h01", address="10.0.0.1")
    rollout = RolloutState.create(state_path(tmp_path, "staging", "R1", "service"), run_id="R1", env="staging",
                                  hosts=[vars(host)], canary=[], batches=[["h01"]], up_to_date=[])
    if state:
        rollout.update("h01", lb={"kind": "fake", "where": "tg-1"})
        rollout.transition("h01", state)
    fake, audits = Recorder(exit_status), []
    final = HostRestart(host, state=rollout, cfg=ServiceConfig(unit="aep-api.service"), lb=fake,
                        connect=lambda: fake, audit=lambda h, action, result, **_: audits.append((action, result)),
                        progress=lambda _: None).run()
    return final, fake.calls, audits, rollout


def test_drain_restart_as_root_health_return_in_that_order(tmp_path):
    final, calls, audits, rollout = drive(tmp_path)
    assert final == "done"
    assert calls == [("registration", "h01"), ("drain", "h01", "tg-1"),
                     ("run", ("systemctl", "restart", "--", "aep-api.service"), "root"), ("restore", "h01", "tg-1")]
    assert audits == [("drain", "ok"), ("restart", "ok"), ("return", "ok")]
    assert [e["state"] for e in rollout.host("h01")["history"]] == ["drained", "restarted", "healthy", "done"]


def test_a_host_killed_after_its_restart_is_not_restarted_again(tmp_path):
    final, calls, audits, _ = drive(tmp_path, state="restarted")
    assert final == "done" and calls == [("restore", "h01", "tg-1")] and audits == [("return", "ok")]


def test_a_failed_restart_leaves_the_host_drained_and_says_what_systemctl_said(tmp_path):
    final, calls, audits, rollout = drive(tmp_path, exit_status=1)
    assert final == "failed" and not any(c[0] == "restore" for c in calls)
    entry = rollout.host("h01")
    assert entry["failed_step"] == "restart" and entry["last_ok"] == "drained"
    assert "exited 1: Job for aep-api.service failed." in entry["error"] and "stays out of service" in entry["error"]
    assert audits[-2:] == [("restart", "exit 1"), ("restart", f"failed: {entry['error']}")]
    assert rollout.out_of_service() == ["h01 (failed at restart)"]


def test_the_runbook_is_registered_with_its_steps_and_production_approval():
    from aep_ops.engine.runbook import load_all

    rb = load_all()["service.restart"]
    assert rb.step_ids() == ["plan_restart", "run_restart", "verify_service"]
    assert [s.requires_approval for s in rb.steps] == [False, True, False] and rb.steps[2].soft
    assert {p.name for p in rb.params} == {"role", "batch", "unit"}


def test_hosts_not_serving_are_restarted_first():
    assert restart_order(["h1", "h2", "h3", "h4"], {"h1", "h3"}) == ["h2", "h4", "h1", "h3"]
    assert restart_order(["h1", "h2"], {"h1", "h2"}) == ["h1", "h2"]


@pytest.mark.parametrize("batches, healthy, floor, short", [
    ([["a"], ["b"], ["c"]], {"a", "b", "c"}, 2, None),
    ([["a", "b"], ["c"]], {"a", "b", "c"}, 2, (1, 1)),
    ([["c"], ["a"], ["b"]], {"a", "b"}, 2, None),  # c is down: restarting it costs nothing; then it serves
    ([["a"], ["b"]], {"a", "b"}, 2, (1, 1)),
    ([["a"]], {"a"}, 1, (1, 0)),  # a role of one host needs min_healthy 0 (an accepted outage)
    ([["a"]], {"a"}, 0, None),
])
def test_capacity_counts_earlier_batches_as_back_in_service(batches, healthy, floor, short):
    assert short_of_capacity(batches, healthy, floor) == short
