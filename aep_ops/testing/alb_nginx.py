"""The ALB's data path for release tests: moto keeps an ALB listener's weighted forward but routes
nothing, so a real nginx routes for it. A thread reads the listener and its target groups' targets
from moto every ``interval`` and, only when the rendered upstream changes, loads it (``nginx -t``,
then a graceful reload: old workers finish their requests, new connections get the new weights).

How ALB weights become nginx weights (nginx needs weights >= 1, the ALB allows 0..999 per group
and splits a group's share evenly over its targets): a group of weight 0 is left out; each target
of a group gets the group's weight times L / (its group's target count), L the least common
multiple of the counts, all divided by their greatest common divisor. So 80/20 with one target
each is 4:1, and a group's share never depends on how many targets it has.

What the ALB would answer with a 503 is answered with a 503 here too, never routed around: a group
with a weight but no registered targets gets a "sink" server (an nginx server that returns 503)
in its place, and with no group weighted at all everything goes to the sink. Upstream errors are
not retried on another server (``proxy_next_upstream off``, ``max_fails=0``), so a release that
stops the old colour before the weights moved shows as failed requests, as it would behind an ALB.

Clients get no keep-alive from this nginx (``keepalive_timeout 0``, each response says
``Connection: close``): a reload makes old workers close their idle keep-alive connections, and a
client that sends its next request on one just then sees it fail. A real ALB never drops client
connections when weights change, so that race would be the harness's own; without keep-alive every
request is a new connection, which only a worker with the current configuration accepts.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
import structlog

from aep_ops.testing.nginx import Nginx, start_nginx, stop_nginx
from aep_ops.testing.ports import free_port

log = structlog.get_logger()

ADDRESS = "127.0.0.1"
UPSTREAM = "alb_targets"


@dataclass(frozen=True)
class Server:
    """One ``server`` line of the upstream."""

    host: str
    port: int
    weight: int


@dataclass(frozen=True)
class Applied:
    """What nginx serves: the listener's weights (target group ARN -> ALB weight), the servers they
    became, how many configurations nginx has loaded (1: the first), and when (time.monotonic())
    the last one became the only one accepting connections."""

    weights: dict[str, int]
    servers: tuple[Server, ...]
    generation: int
    at: float


def forward_weights(listener: dict[str, Any]) -> dict[str, int]:
    """Target group ARN -> weight of the listener's default forward action (a plain
    ``TargetGroupArn`` forward is weight 1 on that group); other actions route nothing."""
    weights: dict[str, int] = {}
    for action in listener.get("DefaultActions", []):
        if action.get("Type") != "forward":
            continue
        groups = action.get("ForwardConfig", {}).get("TargetGroups")
        if groups:
            for group in groups:
                weights[group["TargetGroupArn"]] = int(group.get("Weight", 1))
        elif action.get("TargetGroupArn"):
            weights[action["TargetGroupArn"]] = 1
    return weights


def upstream_servers(weights: dict[str, int], targets: dict[str, list[tuple[str, int]]],
                     sink: tuple[str, int]) -> tuple[Server, ...]:
    """The nginx servers for these ALB weights and each group's (host, port) targets; see the
    module docstring for the scaling and for when the 503 ``sink`` stands in."""
    groups = [(targets.get(arn) or [sink], weight) for arn, weight in weights.items() if weight > 0]
    if not groups:
        return (Server(*sink, 1),)
    common = math.lcm(*(len(members) for members, _ in groups))
    servers = [Server(host, port, weight * common // len(members))
               for members, weight in groups for host, port in sorted(members)]
    divisor = math.gcd(*(s.weight for s in servers))
    return tuple(Server(s.host, s.port, s.weight // divisor) for s in servers)


def render(servers: tuple[Server, ...], port: int, sink_port: int) -> str:
    """The http-level blocks: the upstream, the listener's server and the 503 sink."""
    lines = "".join(f"        server {s.host}:{s.port} weight={s.weight} max_fails=0;\n" for s in servers)
    return (f"    upstream {UPSTREAM} {{\n{lines}    }}\n"
            f"    server {{\n        listen {ADDRESS}:{port};\n        keepalive_timeout 0;\n"
            f"        location / {{\n            proxy_pass http://{UPSTREAM};\n"
            f"            proxy_next_upstream off;\n            proxy_connect_timeout 2s;\n"
            f"            proxy_read_timeout 10s;\n            proxy_set_header Host $host;\n        }}\n    }}\n"
            f"    server {{\n        listen {ADDRESS}:{sink_port};\n        keepalive_timeout 0;\n"
            f"        location / {{ return 503 \"no registered targets\\n\"; }}\n    }}\n")


def read_listener(elbv2: Any, listener_arn: str) -> tuple[dict[str, int], dict[str, list[tuple[str, int]]]]:
    """The listener's weights and, per weighted group, its targets that take new requests."""
    listener = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]
    weights = forward_weights(listener)
    targets: dict[str, list[tuple[str, int]]] = {}
    for arn in weights:
        found = elbv2.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
        targets[arn] = [(d["Target"]["Id"], int(d["Target"]["Port"])) for d in found
                        if d.get("TargetHealth", {}).get("State") != "draining"]
    return weights, targets


@dataclass
class AlbNginx:
    """nginx routing as the listener says; ``start()`` returns once the first rendering is served."""

    elbv2: Any  # a boto3 elbv2 client (used from the sync thread too: boto3 clients are thread-safe)
    listener_arn: str
    interval: float = 0.2
    port: int = 0
    sink_port: int = 0
    nginx: Nginx | None = field(default=None, repr=False)
    error: BaseException | None = field(default=None, repr=False)  # the last failed sync, None once one succeeds
    _applied: Applied | None = field(default=None, repr=False)
    _text: str = field(default="", repr=False)
    _polls_started: int = field(default=0, repr=False)
    _polls_synced: int = field(default=0, repr=False)  # the number of the last poll that succeeded
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{self.port}"

    def start(self) -> AlbNginx:
        self.port = self.port or free_port()
        self.sink_port = self.sink_port or free_port()
        weights, targets = read_listener(self.elbv2, self.listener_arn)
        servers = upstream_servers(weights, targets, (ADDRESS, self.sink_port))
        self._text = render(servers, self.port, self.sink_port)
        self.nginx = start_nginx([], http_extra=self._text, listens=[(ADDRESS, self.port), (ADDRESS, self.sink_port)])
        self._applied = Applied(weights, servers, 1, time.monotonic())
        self._thread = threading.Thread(target=self._run, name=f"alb-nginx-sync-{self.port}", daemon=True)
        self._thread.start()
        return self

    def applied_weights(self) -> Applied:
        with self._changed:
            assert self._applied is not None, "start() first"
            return self._applied

    def wait_applied(self, weights: dict[str, int], timeout: float = 10.0) -> Applied:
        """Block until nginx serves exactly these ALB weights (groups left out count as 0)."""
        wanted = {arn: w for arn, w in weights.items() if w}
        return self._wait(lambda: {a: w for a, w in self._applied.weights.items() if w} == wanted,
                          timeout, f"weights {wanted}")

    def wait_synced(self, timeout: float = 10.0) -> Applied:
        """Block until a read of the listener that began after this call has been applied: every
        change made in moto before the call (weights, registrations) is what nginx serves now."""
        with self._changed:
            target = self._polls_started + 1
        return self._wait(lambda: self._polls_synced >= target, timeout, "a sync after the call")

    def pids(self) -> list[int]:
        """The nginx master and its workers (test teardown checks they are gone)."""
        if self.nginx is None or self.nginx._process is None:
            return []
        return [self.nginx._process.pid, *self.nginx.workers()]

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the listener sync thread did not stop within {timeout:g}s")
            self._thread = None
        nginx, self.nginx = self.nginx, None
        if nginx is not None:
            stop_nginx(nginx)

    def _wait(self, done: Any, timeout: float, what: str) -> Applied:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    raise TimeoutError(f"nginx did not apply {what} within {timeout:g}s: it serves "
                                       f"{self._applied}; last sync error: {self.error!r}")
                self._changed.wait(left)
            return self._applied

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            with self._changed:
                self._polls_started += 1
                number = self._polls_started
            try:
                self._sync(number)
            except Exception as exc:  # noqa: BLE001 - kept for the waiters' error message; the next poll retries
                log.warning("alb_nginx.sync.failed", error=repr(exc))
                with self._changed:
                    self.error = exc

    def _sync(self, number: int) -> None:
        weights, targets = read_listener(self.elbv2, self.listener_arn)
        servers = upstream_servers(weights, targets, (ADDRESS, self.sink_port))
        text = render(servers, self.port, self.sink_port)
        generation = self._applied.generation
        at = self._applied.at
        if text != self._text:
            self.nginx.http_extra = text
            self.nginx.write_conf()
            self.nginx.reload()  # returns once only the new workers accept connections
            self._text, generation, at = text, generation + 1, time.monotonic()
            log.debug("alb_nginx.reloaded", generation=generation, servers=[s.__dict__ for s in servers])
        with self._changed:
            self._applied = Applied(weights, servers, generation, at)
            self.error, self._polls_synced = None, number
            self._changed.notify_all()


def make_alb(elbv2: Any, ec2: Any, blue_ports: list[int], green_ports: list[int],
             name: str = "aep-release") -> dict[str, Any]:
    """An ALB in moto as the release runbooks expect one: a VPC with two subnets, target groups
    ``blue`` and ``green`` (target type ip, health check /healthz) with 127.0.0.1:PORT targets, and
    an HTTP listener on port 80 forwarding blue 100 / green 0. Returns the ids and ARNs."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    region = ec2.meta.region_name
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{region}{zone}")
               ["Subnet"]["SubnetId"] for i, zone in enumerate("ab", start=1)]
    balancer = elbv2.create_load_balancer(Name=name, Subnets=subnets, Type="application",
                                          Scheme="internal")["LoadBalancers"][0]["LoadBalancerArn"]
    groups = {}
    for colour, ports in (("blue", blue_ports), ("green", green_ports)):
        created = elbv2.create_target_group(Name=f"{name}-{colour}", Protocol="HTTP", Port=80, VpcId=vpc,
                                            TargetType="ip", HealthCheckPath="/healthz")
        arn = created["TargetGroups"][0]["TargetGroupArn"]
        if ports:
            elbv2.register_targets(TargetGroupArn=arn, Targets=[{"Id": ADDRESS, "Port": p} for p in ports])
        groups[colour] = arn
    listener = elbv2.create_listener(LoadBalancerArn=balancer, Protocol="HTTP", Port=80, DefaultActions=[
        forward_action({groups["blue"]: 100, groups["green"]: 0})])["Listeners"][0]["ListenerArn"]
    return {"vpc": vpc, "subnets": subnets, "load_balancer": balancer, "listener": listener,
            "blue": groups["blue"], "green": groups["green"]}


def forward_action(weights: dict[str, int], stickiness_seconds: int = 0) -> dict[str, Any]:
    """A weighted forward action for ``modify_listener(DefaultActions=[...])``."""
    stickiness: dict[str, Any] = {"Enabled": stickiness_seconds > 0}
    if stickiness_seconds:
        stickiness["DurationSeconds"] = stickiness_seconds
    return {"Type": "forward", "ForwardConfig": {
        "TargetGroups": [{"TargetGroupArn": arn, "Weight": w} for arn, w in weights.items()],
        "TargetGroupStickinessConfig": stickiness}}


@dataclass
class ReleaseAlb:
    """What ``release_alb`` gives a test: the moto elbv2 client, the ARNs from ``make_alb``, the
    nginx that routes as the listener says, and the blue and green app instances."""

    elbv2: Any
    arns: dict[str, Any]
    data_path: AlbNginx
    apps: dict[str, Any]

    @property
    def url(self) -> str:
        return self.data_path.url

    def weights(self, blue: int, green: int) -> dict[str, int]:
        return {self.arns["blue"]: blue, self.arns["green"]: green}

    def set_weights(self, blue: int, green: int) -> None:
        """``modify_listener`` as a release runbook would (the test's shortcut; nginx follows)."""
        self.elbv2.modify_listener(ListenerArn=self.arns["listener"],
                                   DefaultActions=[forward_action(self.weights(blue, green))])


@pytest.fixture(scope="module")
def release_apps() -> Iterator[dict[str, Any]]:
    """A blue and a green release_app process shared by a module's tests; ``release_alb`` hands
    them back healthy and undegraded after each test. Their counters only grow: compare deltas."""
    from aep_ops.testing.release_app import COLOURS, start_app

    apps: dict[str, Any] = {}
    try:
        for colour in COLOURS:
            apps[colour] = start_app(colour)
        yield apps
    finally:
        for app in apps.values():
            app.stop()


@pytest.fixture
def release_alb(moto_account: Any, release_apps: dict[str, Any]) -> Iterator[ReleaseAlb]:
    """An ALB in this test's own moto account (listener forwarding blue 100 / green 0 to the
    release apps) and the real nginx that routes as its listener says."""
    elbv2 = moto_account.client("elbv2")
    arns = make_alb(elbv2, moto_account.client("ec2"), [release_apps["blue"].port], [release_apps["green"].port])
    data_path = AlbNginx(elbv2, arns["listener"]).start()
    try:
        yield ReleaseAlb(elbv2, arns, data_path, release_apps)
    finally:
        data_path.stop()
        for app in release_apps.values():
            if app.process.poll() is None:  # a test that stopped one has broken the module's pair anyway
                app.degrade(0)
                app.set_healthy(True)
