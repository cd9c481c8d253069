"""service.restart with a real load balancer API (ELBv2 on the moto server): a host is out of its
target group while its service restarts and back in once healthy; a host whose restart fails
stays out and the hosts after it stay in service, untouched. The hosts are real sshd hosts with
a real service process each (tests/support/service_fleet.py)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.support.processes import spawned
from tests.support.service_fleet import ServiceFleet

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(ssh_host_factory, tmp_path):
    service_fleet = ServiceFleet(ssh_host_factory, tmp_path / "fleet")
    yield service_fleet
    service_fleet.close()


def target_group(moto, fleet: ServiceFleet) -> dict:
    """An EC2 instance per host and one target group with all of them registered."""
    ec2, elb = moto.client("ec2"), moto.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    instances = ec2.run_instances(ImageId=image, MinCount=len(fleet.hosts), MaxCount=len(fleet.hosts),
                                  SubnetId=subnet)["Instances"]
    for host, inst in zip(fleet.hosts, instances):
        host.instance_id = inst["InstanceId"]
    tg = elb.create_target_group(Name=f"api-{uuid.uuid4().hex[:8]}", Protocol="HTTP", Port=80, VpcId=vpc,
                                 TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elb.register_targets(TargetGroupArn=tg, Targets=[{"Id": h.instance_id} for h in fleet.hosts])
    return {"tg": tg, "elb": elb}


def write_config(tmp_path, moto, fleet: ServiceFleet, aws: dict) -> dict:
    env_block = (
        f"    aws: {{region: {moto.region}, endpoint_url: '{moto.endpoint_url}'}}\n"
        f"    ssh: {{user: root, identity: '{fleet.ssh_fleet.identity}', known_hosts: '{fleet.ssh_fleet.known_hosts}',"
        f" connect_timeout: 4}}\n"
        f"    hosts:\n{fleet.inventory()}"
        f"    patching: {{lb: elbv2, target_group_arns: ['{aws['tg']}']}}\n"
        f"    service:\n"
        f"      restart_command: ['{fleet.systemctl}', restart, '--', '{{unit}}']\n"
        f"      health_checks: 2\n      health_timeout: 10\n      drain_timeout: 10\n")
    conf = tmp_path / "service.yaml"
    conf.write_text(f"environments:\n  staging:\n{env_block}")
    return {**moto.environ, "AEP_OPS_CONFIG": str(conf)}


def registered(aws: dict) -> set[str]:
    found = aws["elb"].describe_target_health(TargetGroupArn=aws["tg"])["TargetHealthDescriptions"]
    return {t["Target"]["Id"] for t in found if t["TargetHealth"]["State"] not in ("unused", "draining")}


def audit_trail(state_dir) -> list[tuple[str, str, str]]:
    lines = (state_dir / "logs" / "audit.jsonl").read_text().splitlines()
    return [(r["target"], r["action"].split(":")[1], r["result"]) for r in map(json.loads, lines)
            if r["action"] in ("service.restart:drain", "service.restart:restart", "service.restart:return")]


def test_each_host_is_out_of_the_target_group_while_its_service_restarts(fleet, moto_account, tmp_path, state_dir):
    fleet.add(3)
    h01, h02, h03 = fleet.hosts
    aws = target_group(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws)
    everyone = {h.instance_id for h in fleet.hosts}
    h02.hold_restart()  # the restart of h02 waits here until the test has looked at the target group
    repo = Path(__file__).resolve().parents[2]
    argv = [str(Path(sys.executable).parent / "inv"), "service.restart", "--env", "staging", "--role", "api", "--json"]
    log = tmp_path / "run.log"

    with spawned(argv, log=log, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo), **env}) as proc:
        deadline = time.monotonic() + 60
        while not h02.restart_held():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.02)
        assert registered(aws) == everyone - {h02.instance_id}, "only the restarting host is out of service"
        assert len(h01.starts()) == 2 and len(h03.starts()) == 1, "h01 is done, h03 not started"
        assert h02.release_restart()
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]

    assert registered(aws) == everyone
    assert all(len(h.starts()) == 2 and h.pid() == h.starts()[-1] for h in fleet.hosts)
    assert audit_trail(state_dir) == [(h.name, action, "ok") for h in fleet.hosts
                                      for action in ("drain", "restart", "return")]


def test_a_failed_restart_leaves_that_host_drained_and_the_rest_in_service_untouched(
        cli, fleet, moto_account, tmp_path, state_dir):
    fleet.add(3)
    h01, h02, h03 = fleet.hosts
    aws = target_group(moto_account, fleet)
    env = write_config(tmp_path, moto_account, fleet, aws)
    h02.flag("fail-restart")

    proc = cli("service.restart", "--env", "staging", "--role", "api", "--json", env=env, timeout=120)

    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert "h02 at restart" in result["error"] and "exited 1: Job for aep-api failed" in result["error"]
    assert "not started: h03" in result["error"]
    assert registered(aws) == {h01.instance_id, h03.instance_id}, "the failed host stays out of service"
    assert len(h01.starts()) == 2 and len(h02.starts()) == 1 and len(h03.starts()) == 1
    assert h03.calls() == [] and ("h02", "restart", "exit 1") in audit_trail(state_dir)
