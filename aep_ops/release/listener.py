"""The ALB listener whose weighted forward carries the release, and the two target groups.

Why a module of its own: every change of weights is read back until the listener says what was
written (a release step that trusts its own write cannot tell a rejected or overwritten change
from a done one), and stickiness is capped while traffic shifts, or clients stuck to the old
colour would never see the new one. boto3 is imported lazily through ``aws.clients``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from aep_ops.aws.clients import aws_errors, client
from aep_ops.base.errors import StepFailed
from aep_ops.release.settings import COLOURS, ReleaseConfig

READ_BACK_SECONDS = 30.0


@dataclass(frozen=True)
class Forward:
    """What the listener does now: weight per colour and the group stickiness (None: off)."""

    weights: dict[str, int]
    stickiness: int | None

    @property
    def total(self) -> int:
        return sum(self.weights.values())

    def share(self, colour: str) -> int:
        """Per cent of requests the colour receives (0 when no group has weight)."""
        return round(100 * self.weights.get(colour, 0) / self.total) if self.total else 0

    def serving(self) -> str | None:
        """The colour that takes all traffic, or None while it is split (or nothing is served)."""
        live = [c for c in COLOURS if self.weights.get(c, 0) > 0]
        return live[0] if len(live) == 1 else None

    def describe(self) -> str:
        return " / ".join(f"{c} {self.share(c)}%" for c in COLOURS)


class Listener:
    def __init__(self, settings: Any, cfg: ReleaseConfig) -> None:
        self.cfg = cfg
        self.client = client(settings, "elbv2")

    def _actions(self) -> list[dict[str, Any]]:
        with aws_errors(self.client, "reading the listener", resource=self.cfg.listener_arn):
            listeners = self.client.describe_listeners(ListenerArns=[self.cfg.listener_arn])["Listeners"]
        return listeners[0].get("DefaultActions") or []

    def forward(self) -> Forward:
        """The listener's weighted forward; StepFailed when it forwards elsewhere (a person must look)."""
        actions = [a for a in self._actions() if a.get("Type") == "forward"]
        if not actions:
            raise StepFailed(f"listener {self.cfg.listener_arn} does not forward to target groups (its default action"
                             " is not a forward); fix the listener before a release")
        action = actions[0]
        config = action.get("ForwardConfig") or {}
        groups = config.get("TargetGroups") or [{"TargetGroupArn": action.get("TargetGroupArn"), "Weight": 1}]
        weights = {c: 0 for c in COLOURS}
        for group in groups:
            weight = 1 if group.get("Weight") is None else int(group["Weight"])  # ELBv2's default weight is 1
            colour = self.cfg.colour_of(group.get("TargetGroupArn"))
            if colour is not None:
                weights[colour] = weight
            elif weight > 0:
                raise StepFailed(f"listener forwards to {group.get('TargetGroupArn')}, which is neither the blue nor"
                                 " the green target group of release.target_groups; fix one or the other")
        sticky = config.get("TargetGroupStickinessConfig") or {}
        return Forward(weights, int(sticky.get("DurationSeconds") or 0) if sticky.get("Enabled") else None)

    def set_weights(self, weights: dict[str, int], *, stickiness: int | None) -> Forward:
        """Write the weights (and stickiness), then read them back until they hold (bounded)."""
        sticky = {"Enabled": stickiness is not None}
        if stickiness is not None:
            sticky["DurationSeconds"] = int(stickiness)
        action = {"Type": "forward", "ForwardConfig": {
            "TargetGroups": [{"TargetGroupArn": self.cfg.target_groups[c], "Weight": int(weights.get(c, 0))}
                             for c in COLOURS],
            "TargetGroupStickinessConfig": sticky}}
        with aws_errors(self.client, "changing the listener's weights", resource=self.cfg.listener_arn):
            self.client.modify_listener(ListenerArn=self.cfg.listener_arn, DefaultActions=[action])
        return self.wait_weights(weights)

    def wait_weights(self, weights: dict[str, int], timeout: float = READ_BACK_SECONDS) -> Forward:
        deadline = time.monotonic() + timeout
        while True:
            now = self.forward()
            if all(now.weights[c] == int(weights.get(c, 0)) for c in COLOURS):
                return now
            if time.monotonic() > deadline:
                raise StepFailed(f"the listener reads {now.describe()} {timeout:g} s after it was set to"
                                 f" {Forward(dict(weights), None).describe()}; another change may have raced this"
                                 " one: look at the listener before going on")
            time.sleep(0.5)

    def capped_stickiness(self, current: int | None) -> int | None:
        return None if current is None else min(current, self.cfg.max_stickiness_seconds)

    def targets(self, colour: str) -> list[dict[str, Any]]:
        """The colour's registered targets with their health as the load balancer sees it."""
        arn = self.cfg.target_groups[colour]
        with aws_errors(self.client, f"reading the health of the {colour} targets", resource=arn):
            found = self.client.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        return [{"id": t["Target"]["Id"], "port": t["Target"].get("Port"), "state": t["TargetHealth"]["State"],
                 "reason": t["TargetHealth"].get("Reason") or ""} for t in found]

    def deregistration_delay(self, colour: str) -> int:
        arn = self.cfg.target_groups[colour]
        with aws_errors(self.client, f"reading the {colour} target group's attributes", resource=arn):
            attrs = self.client.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        values = {a["Key"]: a["Value"] for a in attrs}
        return int(values.get("deregistration_delay.timeout_seconds") or 300)
