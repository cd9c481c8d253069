"""patch.rolling end to end through the CLI: real sshd hosts, real HTTP health endpoints,
ELBv2 and Auto Scaling on the moto server.

The upgrade runs through a STAND-IN package manager (tests/support/patch_fleet.py), because
every test host shares this machine's dpkg: ``patching.upgrade_command`` and ``reboot_command``
(and, in most tests, ``pending_command``) are a small script that keeps each host's pending
"packages" in that host's directory. The default pending command (real ``apt-get update`` and
``apt-get -s dist-upgrade``) runs for real in one test, against per-host apt sources with a
known answer. Everything else is real: SSH with strict host keys,
the reboot marker at /var/run/reboot-required (each sshd has a private /run), reboots that
stop a host's sshd and health endpoint and start them again, the health gate over HTTP,
and the load-balancer API calls and waiters (moto reports every registered target healthy).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

import aep_ops.testing.sshd as sshd_module
from tests.support.patch_fleet import PatchFleet
from tests.support.processes import assert_killed_mid_step, process_alive, spawned

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(ssh_host_factory, tmp_path, monkeypatch):
    monkeypatch.setattr(sshd_module, "SSHD", str(tmp_path / "fleet" / "sshd-private-run"))
    patch_fleet = PatchFleet(ssh_host_factory, tmp_path / "fleet")
    yield patch_fleet
    patch_fleet.close()


def aws_setup(moto, fleet, *, asg: bool = False) -> dict:
    """EC2 instances for the hosts, one target group (all registered), optionally an ASG."""
    ec2, elb = moto.client("ec2"), moto.client("elbv2")
    suffix = uuid.uuid4().hex[:8]
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{moto.region}a")["Subnet"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instances = ec2.run_instances(ImageId=image, MinCount=len(fleet.hosts), MaxCount=len(fleet.hosts),
                                  SubnetId=subnet["SubnetId"])["Instances"]
    for host, inst in zip(fleet.hosts, instances):
        host.instance_id = inst["InstanceId"]
    tg = elb.create_target_group(Name=f"api-{suffix}", Protocol="HTTP", Port=80, VpcId=vpc,
                                 TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": h.instance_id} for h in fleet.hosts])
    out = {"tg": tg, "elb": elb}
    if asg:
        auto = moto.client("autoscaling")
        ec2.create_launch_template(LaunchTemplateName=f"lt-{suffix}", LaunchTemplateData={"ImageId": image})
        auto.create_auto_scaling_group(AutoScalingGroupName=f"asg-{suffix}", MinSize=0, MaxSize=20, DesiredCapacity=0,
                                       LaunchTemplate={"LaunchTemplateName": f"lt-{suffix}"},
                                       VPCZoneIdentifier=subnet["SubnetId"])
        auto.attach_instances(AutoScalingGroupName=f"asg-{suffix}", InstanceIds=[h.instance_id for h in fleet.hosts])
        out.update(asg=f"asg-{suffix}", auto=auto)
    return out


def write_config(tmp_path, moto, fleet, aws: dict, *, lb: str = "elbv2", real_pending: bool = False) -> dict:
    """``real_pending``: no patching.pending_command, so the default (real apt) runs."""
    hosts = "".join(
        f"      - {{name: {h.name}, address: '{h.ssh.address}', port: {h.ssh.port}, role: api,"
        f" instance_id: {h.instance_id}, health_url: '{h.health.url}'}}\n" for h in fleet.hosts)
    lb_lines = (f"      lb: elbv2\n      target_group_arns: ['{aws['tg']}']\n" if lb == "elbv2"
                else f"      lb: asg\n      asg_name: {aws['asg']}\n")
    env_block = (
        f"    aws: {{region: {moto.region}, endpoint_url: '{moto.endpoint_url}'}}\n"
        f"    ssh: {{user: root, identity: '{fleet.ssh_fleet.identity}', known_hosts: '{fleet.ssh_fleet.known_hosts}',"
        f" connect_timeout: 4}}\n"
        f"    hosts:\n{hosts}"
        f"    patching:\n"
        + ("" if real_pending else f"      pending_command: ['{fleet.standin}', pending]\n") +
        f"      upgrade_command: ['{fleet.standin}', upgrade]\n"
        f"      reboot_command: ['{fleet.standin}', reboot]\n"
        f"      upgrade_log: '{tmp_path}/upgrade-{{host}}.log'\n"
        f"      health_checks: 3\n      health_timeout: 3\n      reboot_timeout: 15\n      drain_timeout: 10\n"
        + lb_lines)
    conf = tmp_path / "patch.yaml"
    conf.write_text(f"environments:\n  staging:\n{env_block}  prod:\n{env_block}")
    return {**moto.environ, "AEP_OPS_CONFIG": str(conf)}


def registered(aws: dict) -> set[str]:
    found = aws["elb"].describe_target_health(TargetGroupArn=aws["tg"])["TargetHealthDescriptions"]
    return {t["Target"]["Id"] for t in found if t["TargetHealth"]["State"] != "unused"}


def audit_actions(state_dir) -> list[tuple[str, str, str]]:
    path = state_dir / "logs" / "audit.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(r["action"], r["target"], r["result"]) for r in lines if r["action"].startswith("patch.rolling:")
            and r["target"].startswith("h")]


def test_rollout_halts_at_the_threshold_keeps_failed_hosts_drained_and_resume_finishes(
        cli, fleet, moto_account, tmp_path, state_dir):
    fleet.add(12)
    for host in fleet.hosts[:10]:
        host.set_pending(["libssl3", "openssl", "linux-image-amd64"], reboot=host.name != "h04")
    h = fleet.by_name
    aws = aws_setup(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws)
    ids = {host.instance_id: host.name for host in fleet.hosts}
    seen_at_reboot: dict[str, bool] = {}
    fleet.on_reboot = lambda host: seen_at_reboot.__setitem__(host.name, host.instance_id in registered(aws))
    # Faults: unreachable from the start, upgrade fails (exit 100), health never returns, hangs.
    h("h03").ssh_down()
    h("h05").flag("fail-upgrade")
    h("h06").flag("break-health")
    h("h08").hang_ssh()

    proc = cli("patch.rolling", "--env", "staging", "--canary", "1", "--batch", "2", "--max-failed", "2", "--json",
               env=env, timeout=120)

    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert [s["status"] for s in result["steps"]] == ["unchanged", "changed", "failed"], result["error"]
    plan = result["outputs"]["plan_batches"]
    assert plan["canary"] == ["h01"] and plan["up_to_date"] == ["h11", "h12"]
    assert plan["batches"] == [["h02", "h03"], ["h04", "h05"], ["h06", "h07"], ["h08", "h09"], ["h10"]]
    assert sorted(plan["unreachable"]) == ["h03", "h08"]
    assert {n: why.split(":")[0] for n, why in result["failed"].items()} == {"h03": "check", "h05": "upgrade",
                                                                                 "h06": "health"}
    assert "more than --max-failed 2" in result["error"] and "not started: h08, h09, h10" in result["error"]
    assert "exited 100: E: Sub-process /usr/bin/dpkg returned an error code (1)" in result["failed"]["h05"]
    assert f"output in {tmp_path}/upgrade-h05.log on the host" in result["failed"]["h05"]
    h01_log = (tmp_path / "upgrade-h01.log").read_text()
    assert "\nUnpacking " in h01_log and h01_log.endswith("== exit 0\n"), "the host keeps the upgrade's output"
    # Failed hosts that were drained stay drained; nothing else is out of service.
    assert {ids[i] for i in set(ids) - registered(aws)} == {"h05", "h06"}
    # Every host that rebooted was out of the target group while it rebooted.
    assert seen_at_reboot == {"h01": False, "h02": False, "h06": False, "h07": False}
    for name in ("h01", "h02", "h04", "h07"):
        assert h(name).pending() == [] and h(name).calls().count("upgrade") == 1
    assert h("h04").reboots == 0 and h("h01").reboots == 1
    # Untouched hosts: only the read-only check of the plan ran there (the hung and the
    # unreachable host never ran anything).
    for name in ("h09", "h10", "h11", "h12"):
        assert h(name).calls() == ["pending"], name
    assert h("h03").calls() == [] and h("h08").calls() == []
    actions = audit_actions(state_dir)
    assert ("patch.rolling:upgrade", "h05", "exit 100") in actions
    assert any(a[:2] == ("patch.rolling:health", "h06") and a[2].startswith("failed: ") for a in actions)
    assert {a[1] for a in actions if a[0] == "patch.rolling:drain"} == {"h01", "h02", "h04", "h05", "h06", "h07"}
    status = json.loads(cli("patch.status", "--env", "staging", "--json", env=env, check_rc=0).stdout)
    states = {r["host"]: (r["state"], r["failed_step"]) for r in status["hosts"]}
    assert states["h05"] == ("failed", "upgrade") and states["h06"] == ("failed", "health")
    assert states["h01"] == ("done", None) and states["h09"] == ("pending", None)
    assert states["h11"] == ("up_to_date", None)
    # The journal has every host transition under the step that made it (runs.show).
    shown = json.loads(cli("runs.show", result["run_id"], "--json", env=env, check_rc=0).stdout)
    notes = [(e["step_id"], e["note"]) for e in shown["events"] if e["status"] == "note"]
    assert [n for s, n in notes if s == "run_canary" and n.startswith("h01: ")] == [
        "h01: checked", "h01: drained", "h01: upgraded", "h01: rebooted", "h01: healthy", "h01: done"]
    assert any(s == "run_batches" and n.startswith("h05: failed at upgrade: ") and "exited 100" in n for s, n in notes)
    assert not any(n.startswith(("h09: ", "h11: ")) for _, n in notes), "untouched hosts have no transitions"
    human = cli("runs.show", result["run_id"], env=env, check_rc=0).stdout
    assert "h06: failed at health" in human and "h07: done" in human

    # A new run would see h06 as up to date and leave it drained: it is refused until this one is finished.
    fresh = cli("patch.rolling", "--env", "staging", env=env, timeout=60)
    assert fresh.returncode == 2 and f"run {result['run_id']} left h05 (failed at upgrade), h06 (failed at health)" \
        in fresh.stderr, fresh.stderr[-2000:]

    # The on-call engineer fixes every fault, then resumes.
    h("h03").ssh_up()
    h("h05").flag("fail-upgrade", on=False)
    (h("h06").dir / "health-status").unlink()
    h("h08").unhang_ssh()
    resumed = cli("patch.rolling", "--env", "staging", "--resume", result["run_id"], "--json", env=env, timeout=120)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = json.loads(resumed.stdout)
    assert [s["status"] for s in again["steps"]] == ["unchanged", "changed", "changed", "unchanged"]
    assert [s["earlier"] for s in again["steps"]] == [True, True, False, False]
    assert registered(aws) == set(ids)
    assert all(host.pending() == [] for host in fleet.hosts)
    for name in ("h01", "h02", "h04", "h06", "h07"):
        assert h(name).calls().count("upgrade") == 1, f"{name} was upgraded again"
    assert h("h06").reboots == 1, "h06 failed at health: the resume continued from there"
    assert h("h05").reboots == 1 and h("h10").reboots == 1
    assert set(again["hosts"].values()) == {"done", "up_to_date"}

    # A second run over the patched fleet changes nothing.
    before = (len(audit_actions(state_dir)), [host.calls().count("upgrade") for host in fleet.hosts])
    second = cli("patch.rolling", "--env", "staging", "--json", env=env, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    assert [s["status"] for s in json.loads(second.stdout)["steps"]] == ["unchanged"] * 4
    assert (len(audit_actions(state_dir)), [host.calls().count("upgrade") for host in fleet.hosts]) == before
    assert registered(aws) == set(ids)


def test_capacity_refusal_exits_2_and_production_needs_yes(cli, fleet, moto_account, tmp_path, state_dir):
    fleet.add(10)
    for host in fleet.hosts:
        host.set_pending(["openssl"])
    aws = aws_setup(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws)
    everyone = {host.instance_id for host in fleet.hosts}

    plan = cli("patch.rolling", "--env", "prod", "--dry-run", "--batch", "3", env=env, timeout=60)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "would change: patch the canary h01" in plan.stdout
    assert "would change: patch 9 host(s): h02, h03" in plan.stdout and "10 healthy in service, min 2" in plan.stdout

    refused = cli("patch.rolling", "--env", "staging", "--batch", "100%", "--canary", "0", env=env, timeout=60)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "capacity: 10 of 10 hosts are healthy" in refused.stderr and "at most 9" in refused.stderr

    (fleet.hosts[0].dir / "health-status").write_text("503\n")
    fleet.hosts[1].health.stop()
    too_big = cli("patch.rolling", "--env", "prod", "--batch", "7", "--yes", env=env, timeout=60)
    assert too_big.returncode == 2 and "capacity: 8 of 10" in too_big.stderr, too_big.stderr[-2000:]
    fleet.hosts[1].health.start()

    unapproved = cli("patch.rolling", "--env", "prod", env=env, timeout=60)
    assert unapproved.returncode == 4, unapproved.stderr[-2000:]
    assert "--yes" in unapproved.stderr

    assert registered(aws) == everyone
    assert all(host.calls() == ["pending"] * 4 for host in fleet.hosts), "only the read-only check ran"
    assert audit_actions(state_dir) == []


def test_auto_scaling_standby_during_the_patch_and_in_service_after(cli, fleet, moto_account, tmp_path):
    fleet.add(3)
    for host in fleet.hosts:
        host.set_pending(["tzdata"])
    aws = aws_setup(moto_account, fleet, asg=True)
    env = write_config(tmp_path, moto_account, fleet, aws, lb="asg")

    def lifecycle() -> dict[str, str]:
        found = aws["auto"].describe_auto_scaling_instances(InstanceIds=[h.instance_id for h in fleet.hosts])
        return {i["InstanceId"]: i["LifecycleState"] for i in found["AutoScalingInstances"]}

    def desired() -> int:
        return aws["auto"].describe_auto_scaling_groups(AutoScalingGroupNames=[aws["asg"]])[
            "AutoScalingGroups"][0]["DesiredCapacity"]

    seen: dict[str, tuple[str, int]] = {}
    fleet.on_reboot = lambda host: seen.__setitem__(host.name, (lifecycle()[host.instance_id], desired()))

    proc = cli("patch.rolling", "--env", "staging", "--batch", "2", "--json", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {name: state for name, (state, _) in seen.items()} == {h.name: "Standby" for h in fleet.hosts}
    assert seen["h01"][1] == 2, "standby decremented the desired capacity (no replacement launched)"
    assert {seen["h02"][1], seen["h03"][1]} <= {1, 2}  # batch of 2: one or both in standby at that moment
    assert set(lifecycle().values()) == {"InService"} and desired() == 3
    assert all(h.reboots == 1 and h.pending() == [] for h in fleet.hosts)


def test_the_default_pending_command_runs_real_apt_and_its_answer_drives_the_rollout(cli, fleet, moto_account,
                                                                                     tmp_path):
    """No patching.pending_command: the default one (real `apt-get update` and `apt-get -s
    dist-upgrade`, parsed by the code) runs on each host against its own apt sources and this
    machine's dpkg. h01's sources offer newer versions of three installed packages, h02's none:
    the known answer. After the stand-in upgrade withdraws them, the same real command (the
    upgrade's own re-check and verify_fleet) finds nothing pending."""
    fleet.add(2)
    h01, h02 = fleet.hosts
    offered = h01.offer_updates(["gzip", "sed", "tar"])
    aws = aws_setup(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws, real_pending=True)

    dry = cli("patch.rolling", "--env", "staging", "--dry-run", env=env, timeout=120, check_rc=0).stdout
    assert "2 hosts: 1 with updates, 1 up to date" in dry and "would change: patch the canary h01" in dry

    run = cli("patch.rolling", "--env", "staging", "--json", env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    plan = result["outputs"]["plan_batches"]
    assert sorted(plan["pending"]["h01"]) == sorted(offered) and plan["pending"].keys() == {"h01"}, plan
    assert plan["up_to_date"] == ["h02"] and plan["unreachable"] == {} and plan["canary"] == ["h01"]
    assert [s["status"] for s in result["steps"]] == ["unchanged", "changed", "unchanged", "unchanged"]
    assert result["hosts"] == {"h01": "done", "h02": "up_to_date"}
    assert sorted(h01.installed()) == sorted(offered), "each offered package installed once"
    assert h01.calls() == ["upgrade"] and h02.calls() == [], "the stand-in never answered what is pending"
    with h01.ssh.executor() as ex:  # apt itself, asked on the host: nothing left to upgrade
        listed = ex.run(["sh", "-c", "LC_ALL=C apt list --upgradable 2>/dev/null"]).stdout
    assert "[upgradable from" not in listed, listed
    assert registered(aws) == {h.instance_id for h in fleet.hosts}


def _spawn_rollout(tmp_path, env: dict, *args: str):
    """``inv patch.rolling --env staging ARGS`` as a child whose output goes to a file."""
    repo = Path(__file__).resolve().parents[2]
    return spawned([str(Path(sys.executable).parent / "inv"), "patch.rolling", "--env", "staging", *args],
                   log=tmp_path / "rollout.log", cwd=repo, env={**os.environ, "PYTHONPATH": str(repo), **env})


def _wait(condition, what: str, proc=None, timeout: float = 60):
    """Poll ``condition`` until true; fail saying ``what`` did not happen (early if ``proc`` ended)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run exited with {proc.returncode} before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.02)


def _host_state(tmp_path, name: str) -> dict:
    [state_file] = (tmp_path / "state" / "patching" / "staging").glob("*.json")
    return {"run_id": state_file.stem, **json.loads(state_file.read_text())["hosts"][name]}


def test_a_run_killed_while_a_host_upgrades_resumes_and_upgrades_it_once(cli, fleet, moto_account, tmp_path,
                                                                          state_dir):
    """SIGKILL while the canary's upgrade command runs (held there by the test): the state file
    says h01 is drained, not upgraded, and the journal that run_canary never finished. The
    upgrade runs detached, so it outlives aep-ops and finishes; the resumed run sees nothing
    pending on h01, does not upgrade it again, reboots it once and finishes the rollout."""
    fleet.add(3)
    for host in fleet.hosts:
        host.set_pending(["openssl", "linux-image-amd64"])
    h01 = fleet.by_name("h01")
    h01.hold_upgrade()
    aws = aws_setup(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws)
    log = tmp_path / "upgrade-h01.log"

    with _spawn_rollout(tmp_path, env, "--json") as proc:
        _wait(lambda: h01.held_upgrade_pid() is not None, "h01's upgrade command started", proc)
        upgrade_pid = h01.held_upgrade_pid()
        assert process_alive(upgrade_pid) and _host_state(tmp_path, "h01")["state"] == "drained"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    run_id = _host_state(tmp_path, "h01")["run_id"]
    assert process_alive(upgrade_pid), "the upgrade died with aep-ops: it must run detached"
    assert _host_state(tmp_path, "h01")["state"] == "drained", "killed mid-upgrade: drained, not upgraded"
    assert_killed_mid_step(state_dir, run_id, "run_canary")
    assert log.exists(), "the upgrade ran without its detached wrapper: no log of it on the host"
    assert log.read_text().count("aep-ops: ") == 1 and "== exit" not in log.read_text(), "the upgrade was running"
    assert h01.instance_id not in registered(aws), "killed while drained: still drained"

    assert h01.release_upgrade(), "the held upgrade was no longer waiting"
    _wait(lambda: log.read_text().endswith("== exit 0\n"), "the orphaned upgrade finished")
    resumed = cli("patch.rolling", "--env", "staging", "--resume", run_id, "--json", env=env, timeout=120)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads(resumed.stdout)
    assert result["hosts"] == {"h01": "done", "h02": "done", "h03": "done"}
    assert h01.calls().count("upgrade") == 1 and h01.installed() == ["openssl", "linux-image-amd64"]
    assert h01.reboots == 1 and h01.calls().count("reboot") == 1
    assert all(h.pending() == [] and h.reboots == 1 for h in fleet.hosts)
    assert registered(aws) == {h.instance_id for h in fleet.hosts}


def test_a_run_killed_mid_host_resumes_from_that_hosts_last_transition(cli, fleet, moto_account, tmp_path):
    """SIGKILL while the canary reboots: the state file says 'upgraded'; the resumed run sees the
    host has booted (marker gone), does not upgrade or reboot it again, and finishes the rest."""
    fleet.add(3)
    for host in fleet.hosts:
        host.set_pending(["linux-image-amd64"])
    aws = aws_setup(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws)
    running = []  # the child, killed from the fleet's reboot hook the moment h01 reboots
    fleet.on_reboot = lambda host: running[0].send_signal(signal.SIGKILL) if host.name == "h01" else None
    with _spawn_rollout(tmp_path, env, "--json") as proc:
        running.append(proc)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    _wait(lambda: fleet.by_name("h01").reboots == 1, "h01 came back from its reboot")
    h01 = _host_state(tmp_path, "h01")
    assert h01["state"] == "upgraded"
    assert fleet.by_name("h01").instance_id not in registered(aws), "killed while drained: still drained"

    resumed = cli("patch.rolling", "--env", "staging", "--resume", h01["run_id"], "--json", env=env, timeout=120)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert registered(aws) == {h.instance_id for h in fleet.hosts}
    h01 = fleet.by_name("h01")
    assert h01.calls().count("upgrade") == 1 and h01.reboots == 1 and h01.calls().count("reboot") == 1
    assert all(h.pending() == [] and h.reboots == 1 for h in fleet.hosts)


def test_a_stuck_rollout_can_be_abandoned_with_a_reason_then_new_runs_start(cli, fleet, moto_account, tmp_path,
                                                                             state_dir):
    fleet.add(3)
    for host in fleet.hosts:
        host.set_pending(["openssl"], reboot=False)
    h = fleet.by_name
    aws = aws_setup(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws)
    ids = {host.instance_id: host.name for host in fleet.hosts}
    h("h02").flag("fail-upgrade")  # say h02 is then decommissioned: its run can never be finished
    failed = json.loads(cli("patch.rolling", "--env", "staging", "--json", env=env, timeout=120).stdout)
    assert failed["status"] == "failed" and set(failed["failed"]) == {"h02"}
    run_id = failed["run_id"]
    assert cli("patch.rolling", "--env", "staging", env=env, timeout=60).returncode == 2

    assert "--reason is required" in cli("patch.abandon", run_id, "--env", "staging", env=env, check_rc=2).stderr
    assert "needs --yes" in cli("patch.abandon", run_id, "--env", "prod", "--reason", "gone", env=env,
                                check_rc=4).stderr
    out = cli("patch.abandon", run_id, "--env", "staging", "--reason", "h02 decommissioned (INC-42)", env=env,
              check_rc=0).stdout
    assert f"run {run_id} abandoned by " in out and "still out of service, to handle by hand: h02 (failed at upgrade)" in out
    assert "already abandoned" in cli("patch.abandon", run_id, "--env", "staging", "--reason", "again", env=env,
                                      check_rc=0).stdout
    assert {ids[i] for i in set(ids) - registered(aws)} == {"h02"}, "abandoning touches no host"
    record = [json.loads(line) for line in (state_dir / "logs" / "audit.jsonl").read_text().splitlines()
              if '"patch.abandon"' in line]
    assert len(record) == 1 and record[0]["args"]["reason"] == "h02 decommissioned (INC-42)"

    resumed = cli("patch.rolling", "--env", "staging", "--resume", run_id, env=env, timeout=60)
    assert resumed.returncode == 2 and f"run {run_id} was abandoned by " in resumed.stderr
    # The on-call engineer puts the replacement host (same name) in service by hand, as the message says.
    h("h02").flag("fail-upgrade", on=False)
    aws["elb"].register_targets(TargetGroupArn=aws["tg"], Targets=[{"Id": h("h02").instance_id}])
    fresh = cli("patch.rolling", "--env", "staging", "--json", env=env, timeout=120)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert registered(aws) == set(ids) and all(host.pending() == [] for host in fleet.hosts)
