"""incident.diagnose's AWS source against moto's server (the real AWS API is out of reach here):
an unhealthy ALB target, a CloudWatch alarm in ALARM, Auto Scaling activities, each a finding
with what to run; an API that cannot be reached makes the source fail within its deadline and
says why."""

from __future__ import annotations

import time

from aep_ops.config.settings import load
from aep_ops.incident.settings import IncidentConfig
from aep_ops.incident.source_aws import AwsSource
from tests.conftest import write_config


def _world(moto):
    ec2, elbv2 = moto.client("ec2"), moto.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    group = elbv2.create_target_group(Name="api-blue", Protocol="HTTP", Port=3000, VpcId=vpc,
                                      TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    image = ec2.describe_images()["Images"][0]["ImageId"]
    up, down = (i["InstanceId"] for i in ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2)["Instances"])
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": up, "Port": 3000}, {"Id": down, "Port": 3000}])
    ec2.stop_instances(InstanceIds=[down])
    cloudwatch = moto.client("cloudwatch")
    for name in ("aep-api-5xx", "other-team-cpu"):
        cloudwatch.put_metric_alarm(AlarmName=name, MetricName="HTTPCode_Target_5XX_Count",
                                    Namespace="AWS/ApplicationELB", Statistic="Sum", Period=60,
                                    EvaluationPeriods=1, Threshold=10, ComparisonOperator="GreaterThanThreshold")
        cloudwatch.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=f"{name}: threshold crossed")
    cloudwatch.put_metric_alarm(AlarmName="aep-api-latency", MetricName="TargetResponseTime",
                                Namespace="AWS/ApplicationELB", Statistic="Average", Period=60, EvaluationPeriods=1,
                                Threshold=1, ComparisonOperator="GreaterThanThreshold")
    return group, up, down


def test_unhealthy_targets_and_alarms_are_findings(moto_account, tmp_path, monkeypatch):
    moto_account.use_in(monkeypatch)
    group, up, down = _world(moto_account)
    write_config(tmp_path / "aws.yaml", f"""
environments:
  cloud:
    production: false
    backend: local
    aws: {moto_account.aws_yaml}
    incident: {{target_groups: ["{group}"], alarm_prefix: aep-}}
""", monkeypatch)
    settings = load("cloud")
    source = AwsSource(settings, IncidentConfig.from_settings(settings), since_seconds=1800)
    result = source.collect(time.monotonic() + 10)
    assert result.status == "ok", result.error
    states = {t["target"]: t["state"] for t in result.data["target_health"]}
    assert states == {up: "healthy", down: "unused"}
    assert [a["name"] for a in result.data["alarms"]] == ["aep-api-5xx"], "ALARM only, with the prefix"
    alarm = next(f for f in result.findings if "aep-api-5xx" in f.what)
    assert alarm.severity == "critical" and "threshold crossed" in alarm.what
    stopped = [f for f in result.findings if down in f.what]
    assert len(stopped) == 1 and stopped[0].severity == "critical" and "Target.InvalidState" in stopped[0].what
    assert stopped[0].runbook == "service.restart" and not any(up in f.what for f in result.findings)
    assert "aep-api-5xx" in result.raw["aws.json"]


def test_unreachable_api_fails_within_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    write_config(tmp_path / "aws.yaml", """
environments:
  cloud:
    production: false
    backend: local
    aws: {region: eu-west-1, endpoint_url: "http://127.0.0.1:1"}
    incident: {target_groups: ["arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/x/0123456789abcdef"]}
""", monkeypatch)
    settings = load("cloud")
    started = time.monotonic()
    result = AwsSource(settings, IncidentConfig.from_settings(settings), since_seconds=1800).collect(
        time.monotonic() + 5)
    assert time.monotonic() - started < 5 + 1
    assert result.status == "partial" and result.data["target_health"] is None and result.data["alarms"] is None
    assert "target_health" in result.error and "alarms" in result.error


def test_local_environment_without_aws_is_skipped(tmp_path, monkeypatch):
    write_config(tmp_path / "aws.yaml", "environments:\n  plain:\n    production: false\n    backend: local\n", monkeypatch)
    settings = load("plain")
    result = AwsSource(settings, IncidentConfig.from_settings(settings), since_seconds=60).collect(
        time.monotonic() + 5)
    assert result.status == "skipped" and "no aws" in result.error
