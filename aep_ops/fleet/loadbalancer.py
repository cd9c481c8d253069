"""Taking a host out of service and putting it back: ELBv2 target groups, Auto Scaling
standby, or nothing (``patching.lb``).

Why a module of its own: the per-host patch state machine must not care how an environment
routes traffic. Each kind answers three questions the same way: which hosts take traffic
now (capacity), drain this host and wait until no request reaches it, and return it and
wait until the load balancer sends it traffic again. Every wait is bounded (boto3 waiters or
a deadline loop). Both drain and return check first and act only when needed, so a resumed
rollout can call them again safely. boto3 is imported lazily through ``aws.clients``.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from aep_ops.aws.clients import AwsTimeout, aws_errors, client
from aep_ops.base.errors import ConfigError, StepFailed

if TYPE_CHECKING:  # pragma: no cover
    from aep_ops.fleet.inventory import Host

DEFAULT_TIMEOUT = 300
_GONE = ("unused", "draining")  # no new requests reach a target in these states


class LoadBalancer(Protocol):
    kind: str

    def in_service(self, hosts: Iterable[Host]) -> set[str]:
        """Names of the hosts that take traffic right now."""

    def registration(self, host: Host) -> dict[str, Any]:
        """Where the host serves now; saved before draining so return restores exactly that."""

    def drain(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        """Stop traffic to the host (if it still gets any) and wait until draining ended."""

    def restore(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        """Send traffic to the host again where ``record`` says it served, and wait for it."""


def load_balancer_for(settings: Any) -> LoadBalancer:
    """The environment's kind: ``patching.lb``, else inferred (target groups, ASG, none)."""
    cfg = settings.env.get("patching") or {}
    kind = cfg.get("lb") or ("elbv2" if cfg.get("target_group_arns") else "asg" if cfg.get("asg_name") else "none")
    where = f"environments.{settings.env_name}.patching"
    if kind == "elbv2":
        if not cfg.get("target_group_arns"):
            raise ConfigError(f"{where}.lb is elbv2 but {where}.target_group_arns is empty; "
                              "list the ALB target groups the hosts serve in")
        return TargetGroups(settings, list(cfg["target_group_arns"]))
    if kind == "asg":
        if not cfg.get("asg_name"):
            raise ConfigError(f"{where}.lb is asg but {where}.asg_name is not set")
        return AutoScaling(settings, cfg["asg_name"])
    return NoLoadBalancer()


def waiter_config(timeout: float) -> dict[str, Any]:
    """Poll often enough for a short test deadline, at most every 15 s (AWS's own pace)."""
    delay = min(15.0, max(0.2, timeout / 20))
    return {"Delay": delay, "MaxAttempts": max(1, math.ceil(timeout / delay))}


class NoLoadBalancer:
    """Hosts behind no load balancer (or one aep-ops does not manage): nothing to drain."""

    kind = "none"

    def in_service(self, hosts: Iterable[Host]) -> set[str]:
        return {h.name for h in hosts}

    def registration(self, host: Host) -> dict[str, Any]:
        return {"kind": self.kind}

    def drain(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        pass

    def restore(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        pass


class TargetGroups:
    """ALB/NLB target groups with instance targets: deregister, wait ``target_deregistered``;
    register, wait ``target_in_service``. A host is in service if it is healthy in at least
    one of the configured groups."""

    kind = "elbv2"

    def __init__(self, settings: Any, arns: list[str]) -> None:
        self.arns = arns
        self.client = client(settings, "elbv2")

    def _targets(self, arn: str) -> list[dict[str, Any]]:
        with aws_errors(self.client, "reading target health", resource=arn):
            return self.client.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]

    def in_service(self, hosts: Iterable[Host]) -> set[str]:
        by_id = {h.instance_id: h.name for h in hosts if h.instance_id}
        healthy: set[str] = set()
        for arn in self.arns:
            for t in self._targets(arn):
                if t["TargetHealth"]["State"] == "healthy" and t["Target"]["Id"] in by_id:
                    healthy.add(by_id[t["Target"]["Id"]])
        return healthy

    def registration(self, host: Host) -> dict[str, Any]:
        iid = _instance_id(host)
        targets = [{"arn": arn, "port": t["Target"].get("Port")}
                   for arn in self.arns for t in self._targets(arn)
                   if t["Target"]["Id"] == iid and t["TargetHealth"]["State"] not in _GONE]
        return {"kind": self.kind, "instance_id": iid, "targets": targets}

    def drain(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        iid = _instance_id(host)
        current = {(r["arn"], r["port"]) for r in self.registration(host)["targets"]}
        for t in record["targets"]:
            target = _target(iid, t["port"])
            if (t["arn"], t["port"]) in current:
                with aws_errors(self.client, f"deregistering {host.name} ({iid})", resource=t["arn"]):
                    self.client.deregister_targets(TargetGroupArn=t["arn"], Targets=[target])
            with aws_errors(self.client, f"waiting for {host.name} ({iid}) to drain", resource=t["arn"]):
                self.client.get_waiter("target_deregistered").wait(
                    TargetGroupArn=t["arn"], Targets=[target], WaiterConfig=waiter_config(timeout))

    def restore(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        iid = _instance_id(host)
        current = {(r["arn"], r["port"]) for r in self.registration(host)["targets"]}
        for t in record["targets"]:
            target = _target(iid, t["port"])
            if (t["arn"], t["port"]) not in current:
                with aws_errors(self.client, f"registering {host.name} ({iid})", resource=t["arn"]):
                    self.client.register_targets(TargetGroupArn=t["arn"], Targets=[target])
            with aws_errors(self.client, f"waiting for {host.name} ({iid}) to be healthy", resource=t["arn"]):
                self.client.get_waiter("target_in_service").wait(
                    TargetGroupArn=t["arn"], Targets=[target], WaiterConfig=waiter_config(timeout))


class AutoScaling:
    """Auto Scaling standby: AWS deregisters the instance from the group's target groups
    (draining) before it reports ``Standby``, and registers it again on exit. Standby
    decrements the desired capacity, so the group does not launch a replacement."""

    kind = "asg"

    def __init__(self, settings: Any, group: str) -> None:
        self.group = group
        self.client = client(settings, "autoscaling")

    def _states(self, instance_ids: list[str]) -> dict[str, tuple[str, str]]:
        out: dict[str, tuple[str, str]] = {}
        for start in range(0, len(instance_ids), 50):  # the API takes at most 50 ids
            with aws_errors(self.client, "reading Auto Scaling instances", resource=self.group):
                page = self.client.describe_auto_scaling_instances(InstanceIds=instance_ids[start:start + 50])
            for i in page["AutoScalingInstances"]:
                out[i["InstanceId"]] = (i["AutoScalingGroupName"], i["LifecycleState"])
        return out

    def _state(self, host: Host) -> str:
        iid = _instance_id(host)
        group, state = self._states([iid]).get(iid, (None, None))
        if group != self.group:
            raise StepFailed(f"{host.name} ({iid}) is not in Auto Scaling group {self.group}"
                             f"{f' but in {group}' if group else ''}; fix hosts[].instance_id or patching.asg_name")
        return state  # type: ignore[return-value]

    def in_service(self, hosts: Iterable[Host]) -> set[str]:
        ids = {h.instance_id: h.name for h in hosts if h.instance_id}
        return {ids[iid] for iid, (group, state) in self._states(list(ids)).items()
                if iid in ids and group == self.group and state == "InService"}

    def registration(self, host: Host) -> dict[str, Any]:
        return {"kind": self.kind, "instance_id": _instance_id(host), "group": self.group,
                "state": self._state(host)}

    def drain(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        iid = _instance_id(host)
        state = self._state(host)
        if state == "InService":
            with aws_errors(self.client, f"moving {host.name} ({iid}) to standby", resource=self.group):
                self.client.enter_standby(AutoScalingGroupName=self.group, InstanceIds=[iid],
                                          ShouldDecrementDesiredCapacity=True)
        elif state not in ("EnteringStandby", "Standby"):
            raise StepFailed(f"{host.name} ({iid}) is {state} in {self.group}, neither in service nor in standby;"
                             " wait for the group's activity to finish, then resume")
        self._wait(host, "Standby", timeout)

    def restore(self, host: Host, record: dict[str, Any], timeout: float) -> None:
        if record.get("state") != "InService":
            return  # it was not in service before we came: leave it as we found it
        if self._state(host) == "Standby":
            with aws_errors(self.client, f"moving {host.name} out of standby", resource=self.group):
                self.client.exit_standby(AutoScalingGroupName=self.group, InstanceIds=[_instance_id(host)])
        self._wait(host, "InService", timeout)

    def _wait(self, host: Host, wanted: str, timeout: float) -> None:
        delay = waiter_config(timeout)["Delay"]
        deadline = time.monotonic() + timeout
        while True:
            state = self._state(host)
            if state == wanted:
                return
            if time.monotonic() + delay > deadline:
                raise AwsTimeout(f"{host.name} is still {state} in Auto Scaling group {self.group} after"
                                 f" {timeout:g}s (waiting for {wanted}); check the group's activity history,"
                                 " then resume")
            time.sleep(delay)


def _instance_id(host: Host) -> str:
    if not host.instance_id:
        raise ConfigError(f"host {host.name} has no instance_id, so it cannot be taken out of the load"
                          " balancer; set hosts[].instance_id (or use patching.lb: none)")
    return host.instance_id


def _target(instance_id: str, port: int | None) -> dict[str, Any]:
    return {"Id": instance_id, **({"Port": port} if port else {})}
