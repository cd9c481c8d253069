"""The SSM Run Command backend.

Against the moto server: moto's ``send_command`` records the command and reports every
invocation as Success with empty output, but EXECUTES NOTHING (and does not implement
``list_command_invocations``). So these tests prove the API flow only: the request we send
(document, commands, MaxConcurrency, MaxErrors, timeouts), the polling of
``get_command_invocation`` per instance, and the aggregated result, including through
``inv fleet.run --via ssm``. What a real agent reports when things go wrong (Failed with an
exit code, TimedOut, Undeliverable, still pending at the deadline) is fed in with botocore's
Stubber, because moto cannot produce it.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from aep_ops.executors import ssm as ssm_backend
from aep_ops.executors.ssm import run_via_ssm
from tests.conftest import write_config

CMD1, CMDA, CMDB = (f"{n}" * 8 + "-1111-2222-3333-444444444444" for n in "abc")  # ids are UUIDs


def _instances(moto_account, n):
    ec2 = moto_account.client("ec2")
    out = ec2.run_instances(ImageId="ami-12345678", MinCount=n, MaxCount=n, InstanceType="t3.micro")
    return [i["InstanceId"] for i in out["Instances"]]


def test_api_flow_against_moto(moto_account):
    ids = _instances(moto_account, 3)
    ssm = moto_account.client("ssm")

    result = run_via_ssm(ssm, ids, "uptime; df -h /", max_concurrency="2", max_errors="0", timeout=45,
                         poll_interval=0.01)

    assert [o.target for o in result.outcomes] == ids and result.ok
    assert {(o.status, o.result.exit_status, o.result.stdout) for o in result.outcomes} == {("ok", 0, "")}
    sent = [c for c in ssm.list_commands(InstanceId=ids[0])["Commands"] if c["Comment"] == "aep-ops fleet.run"]
    assert len(sent) == 1
    command = sent[0]
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Parameters"] == {"commands": ["uptime; df -h /"], "executionTimeout": ["45"]}
    assert (command["MaxConcurrency"], command["MaxErrors"], command["TimeoutSeconds"]) == ("2", "0", 45)
    assert sorted(command["InstanceIds"]) == sorted(ids)


def test_fleet_run_via_ssm_through_the_cli(cli, moto_account, tmp_path, monkeypatch):
    ids = _instances(moto_account, 2)
    write_config(tmp_path / "ssm.yaml", f"""
environments:
  ssmfleet:
    production: false
    backend: local
    aws: {{region: {moto_account.region}, endpoint_url: "{moto_account.endpoint_url}"}}
    ssm: {{max_concurrency: "50%", max_errors: "1", timeout: 30}}
    hosts:
      - {{name: api1, address: 10.0.0.1, instance_id: {ids[0]}}}
      - {{name: api2, address: 10.0.0.2, instance_id: {ids[1]}}}
""", monkeypatch)
    proc = cli("fleet.run", "--env", "ssmfleet", "--via", "ssm", "--json", "--", "uptime", env=moto_account.environ)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [(h["name"], h["target"], h["status"]) for h in data["hosts"]] == [
        ("api1", ids[0], "ok"), ("api2", ids[1], "ok")]
    sent = moto_account.client("ssm").list_commands(InstanceId=ids[1])["Commands"]
    assert sent[-1]["MaxConcurrency"] == "50%" and sent[-1]["Parameters"]["commands"] == ["uptime"]


def test_hosts_without_instance_id_cannot_use_ssm(cli, tmp_path, monkeypatch):
    write_config(tmp_path / "n.yaml", "environments: {plain: {production: false, backend: local, "
                 "hosts: [{name: a, address: 10.0.0.1}]}}\n", monkeypatch)
    proc = cli("fleet.run", "--env", "plain", "--via", "ssm", "--", "true")
    assert proc.returncode == 2 and "needs an EC2 instance id" in proc.stderr


# -- status mapping with botocore's Stubber (moto always answers Success) -----------------------


def _stubbed():
    client = boto3.session.Session().client("ssm", region_name="eu-west-1", aws_access_key_id="x",
                                            aws_secret_access_key="x")
    return client, Stubber(client)


def _invocation(instance, status, details=None, code=-1, out="", err=""):
    return {"CommandId": CMD1, "InstanceId": instance, "Status": status, "StatusDetails": details or status,
            "ResponseCode": code, "StandardOutputContent": out, "StandardErrorContent": err}


def test_final_statuses_map_to_ok_failed_unreachable():
    client, stub = _stubbed()
    ids = ["i-ok", "i-fail", "i-slow", "i-gone", "i-offline", "i-denied"]
    stub.add_response("send_command", {"Command": {"CommandId": CMD1}}, {
        "InstanceIds": ids, "DocumentName": "AWS-RunShellScript", "Comment": "aep-ops fleet.run",
        "Parameters": {"commands": ["apt-get -s upgrade"], "executionTimeout": ["120"]},
        "TimeoutSeconds": 120, "MaxConcurrency": "3", "MaxErrors": "2"})
    for answer in [
        _invocation("i-ok", "Success", code=0, out="0 upgraded\n"),
        _invocation("i-fail", "Failed", code=100, err="E: Could not get lock\n"),
        _invocation("i-slow", "TimedOut", "ExecutionTimedOut"),
        _invocation("i-gone", "Failed", "Undeliverable"),
        _invocation("i-offline", "TimedOut", "DeliveryTimedOut"),
        _invocation("i-denied", "Failed", "AccessDenied"),
    ]:
        stub.add_response("get_command_invocation", answer, {"CommandId": CMD1, "InstanceId": answer["InstanceId"]})

    with stub:
        result = run_via_ssm(client, ids, "apt-get -s upgrade", max_concurrency="3", max_errors="2", timeout=120,
                             sleep=lambda s: None)
    stub.assert_no_pending_responses()

    by_id = {o.target: o for o in result.outcomes}
    assert [by_id[i].status for i in ids] == ["ok", "failed", "unreachable", "unreachable", "unreachable",
                                              "unreachable"]
    assert by_id["i-ok"].result.stdout == "0 upgraded\n"
    assert (by_id["i-fail"].result.exit_status, by_id["i-fail"].result.stderr_tail()) == (100, "E: Could not get lock")
    assert "execution timeout" in by_id["i-slow"].error
    assert "Undeliverable" in by_id["i-gone"].error and "agent" in by_id["i-gone"].error
    assert "DeliveryTimedOut" in by_id["i-offline"].error
    assert "IAM role" in by_id["i-denied"].error


def test_polls_until_final_and_tolerates_unregistered_invocations():
    client, stub = _stubbed()
    stub.add_response("send_command", {"Command": {"CommandId": CMD1}})
    stub.add_client_error("get_command_invocation", "InvocationDoesNotExist", http_status_code=400)
    stub.add_response("get_command_invocation", _invocation("i-1", "InProgress"))
    stub.add_response("get_command_invocation", _invocation("i-1", "Success", code=0, out="done\n"))
    sleeps = []
    with stub:
        result = run_via_ssm(client, ["i-1"], "true", sleep=sleeps.append, poll_interval=0.5)
    assert result.ok and result.outcomes[0].result.stdout == "done\n"
    assert sleeps == [0.5, 1.0], "polling backs off"


def test_still_pending_at_the_deadline_is_unreachable_and_cancelled(monkeypatch):
    """A fake clock: every sleep advances it, so the deadline comes without waiting."""
    client, stub = _stubbed()
    clock = FakeClock()
    monkeypatch.setattr(ssm_backend, "time", clock)
    stub.add_response("send_command", {"Command": {"CommandId": CMD1}})
    for _ in range(11):  # t = 0, .5, 1.5, 3.5, 7.5, then every 5 s up to the 35 s deadline
        stub.add_response("get_command_invocation", _invocation("i-1", "InProgress"))
    stub.add_response("cancel_command", {}, {"CommandId": CMD1, "InstanceIds": ["i-1"]})
    with stub:
        result = run_via_ssm(client, ["i-1"], "sleep 999", timeout=5, sleep=clock.sleep)
    stub.assert_no_pending_responses()
    assert result.outcomes[0].status == "unreachable"
    assert "no final SSM status within 35s (last: InProgress)" in result.outcomes[0].error
    assert clock.now <= 5 + ssm_backend.DELIVERY_TIMEOUT + 0.001


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_more_than_50_instances_are_sent_in_batches():
    client, stub = _stubbed()
    ids = [f"i-{n:017x}" for n in range(60)]
    stub.add_response("send_command", {"Command": {"CommandId": CMDA}}, {
        "InstanceIds": ids[:50], "DocumentName": "AWS-RunShellScript", "Comment": "aep-ops fleet.run",
        "Parameters": {"commands": ["true"], "executionTimeout": ["600"]}, "TimeoutSeconds": 600,
        "MaxConcurrency": "10", "MaxErrors": "1"})
    stub.add_response("send_command", {"Command": {"CommandId": CMDB}}, {
        "InstanceIds": ids[50:], "DocumentName": "AWS-RunShellScript", "Comment": "aep-ops fleet.run",
        "Parameters": {"commands": ["true"], "executionTimeout": ["600"]}, "TimeoutSeconds": 600,
        "MaxConcurrency": "10", "MaxErrors": "1"})
    for n, instance in enumerate(ids):
        stub.add_response("get_command_invocation", {**_invocation(instance, "Success", code=0)},
                          {"CommandId": CMDA if n < 50 else CMDB, "InstanceId": instance})
    with stub:
        result = run_via_ssm(client, ids, "true", sleep=lambda s: None)
    assert result.ok and len(result.outcomes) == 60


@pytest.mark.parametrize("ids, command", [([], "true"), (["i-1"], "  ")])
def test_nothing_to_send_is_a_usage_error(ids, command):
    from aep_ops.base.errors import UsageError

    with pytest.raises(UsageError):
        run_via_ssm(object(), ids, command)
