"""The gates a canary step must pass: target health, CloudWatch alarms, and the new colour's
error rate from its own metrics endpoint.

Why the error rate needs a minimum request count: a canary that served three requests without
an error has proved nothing, so too little traffic is *inconclusive* (hold, and roll back at the
step's deadline), never a pass (flagger#1035). Counters are read from every target of the colour
at the start of the step and compared later, so earlier traffic and other steps do not count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aep_ops.base.netports import is_ip_address
from aep_ops.aws.clients import aws_errors, client
from aep_ops.base.errors import ConfigError
from aep_ops.patch.host import health_probe
from aep_ops.release.listener import Listener
from aep_ops.release.settings import ReleaseConfig

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
SCRAPE_TIMEOUT = 3.0
MAX_METRICS_BYTES = 8 * 2**20


@dataclass
class Verdict:
    gate: str
    status: str  # pass | fail | inconclusive
    why: str
    figures: dict[str, Any] = field(default_factory=dict)


def target_urls(settings: Any, targets: list[dict[str, Any]], endpoint: str) -> dict[str, str]:
    """``id:port`` -> URL of ``endpoint`` on that target (instance targets by their private address)."""
    addresses = {t["id"]: t["id"] for t in targets if is_ip_address(t["id"])}
    instances = [t["id"] for t in targets if t["id"] not in addresses]
    if instances:
        ec2 = client(settings, "ec2")
        with aws_errors(ec2, "looking up the targets' addresses"):
            reservations = ec2.describe_instances(InstanceIds=instances)["Reservations"]
        for instance in (i for r in reservations for i in r["Instances"]):
            if instance.get("PrivateIpAddress"):
                addresses[instance["InstanceId"]] = instance["PrivateIpAddress"]
    return {f"{t['id']}:{t['port']}": f"http://{_host(addresses[t['id']])}:{t['port']}{endpoint}"
            for t in targets if t["id"] in addresses and t.get("port")}


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def health(settings: Any, listener: Listener, colour: str) -> Verdict:
    """Every target of the colour healthy in the load balancer, and on its health endpoint if set."""
    cfg = listener.cfg
    targets = listener.targets(colour)
    if not targets:
        return Verdict("health", FAIL, f"no target is registered in the {colour} target group")
    sick = [f"{t['id']}:{t['port']} is {t['state']}" + (f" ({t['reason']})" if t["reason"] else "")
            for t in targets if t["state"] != "healthy"]
    if not sick and cfg.health_endpoint:
        for name, url in target_urls(settings, targets, cfg.health_endpoint).items():
            ok, what = health_probe(url, SCRAPE_TIMEOUT)
            if not ok:
                sick.append(f"{name} answers {what} on {cfg.health_endpoint}")
    if sick:
        return Verdict("health", FAIL, f"{colour}: " + "; ".join(sick[:5]), {"unhealthy": sick})
    return Verdict("health", PASS, f"all {len(targets)} {colour} target(s) healthy", {"targets": len(targets)})


class Alarms:
    """The environment's gating alarms: their states, and how long a step must last for them to see it."""

    def __init__(self, settings: Any, cfg: ReleaseConfig) -> None:
        self.cfg = cfg
        self.client = client(settings, "cloudwatch") if cfg.alarms else None

    def describe(self) -> list[dict[str, Any]]:
        if not self.cfg.alarms:
            return []
        with aws_errors(self.client, "reading the gating alarms"):
            found = self.client.describe_alarms(AlarmNames=list(self.cfg.alarms))["MetricAlarms"]
        missing = sorted(set(self.cfg.alarms) - {a["AlarmName"] for a in found})
        if missing:
            raise ConfigError(f"gating alarm(s) {', '.join(missing)} of release.alarms do not exist in CloudWatch;"
                              " fix the names (a gate that cannot be read would pass everything)")
        return found

    def firing(self) -> list[str]:
        return sorted(a["AlarmName"] for a in self.describe() if a.get("StateValue") == "ALARM")

    def gate(self) -> Verdict:
        firing = self.firing()
        if firing:
            return Verdict("alarms", FAIL, f"alarm(s) in ALARM: {', '.join(firing)}", {"firing": firing})
        return Verdict("alarms", PASS, f"{len(self.cfg.alarms)} gating alarm(s) OK")

    def minimum_wait(self) -> float:
        """Period x EvaluationPeriods of the slowest alarm, plus the metric lag: a shorter step
        would pass before any alarm could have fired."""
        spans = [int(a.get("Period") or 60) * int(a.get("EvaluationPeriods") or 1) for a in self.describe()]
        return float(max(spans, default=0) + (self.cfg.metric_lag_seconds if spans else 0))


def scrape(url: str, metric: str, status_label: str) -> tuple[int, int]:
    """(requests, 5xx answers) from one target's Prometheus text; OSError/ValueError when unreadable."""
    import urllib.request  # here, not at the top: the CLI imports this module to list tasks

    from prometheus_client.parser import text_string_to_metric_families

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=SCRAPE_TIMEOUT) as response:
        text = response.read(MAX_METRICS_BYTES + 1).decode("utf-8", "replace")
    if len(text) > MAX_METRICS_BYTES:
        raise ValueError(f"more than {MAX_METRICS_BYTES} bytes of metrics")
    total = errors = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != metric and not (family.name == metric and sample.name.endswith("_total")):
                continue
            total += int(sample.value)
            if str(sample.labels.get(status_label, "")).startswith("5"):
                errors += int(sample.value)
    return total, errors


class ErrorRate:
    """The colour's 5xx share since ``start()``, summed over its targets."""

    def __init__(self, settings: Any, listener: Listener, colour: str) -> None:
        self.settings, self.listener, self.colour, self.cfg = settings, listener, colour, listener.cfg
        self.baseline: dict[str, tuple[int, int]] = {}

    def _read(self) -> tuple[dict[str, tuple[int, int]], list[str]]:
        urls = target_urls(self.settings, self.listener.targets(self.colour), self.cfg.metrics_endpoint)
        counts, unreadable = {}, []
        for name, url in urls.items():
            try:
                counts[name] = scrape(url, self.cfg.requests_metric, self.cfg.status_label)
            except (OSError, ValueError) as exc:  # URLError is an OSError
                unreadable.append(f"{name}: {type(exc).__name__}")
        return counts, unreadable

    def start(self) -> None:
        self.baseline, _ = self._read()

    def gate(self) -> Verdict:
        counts, unreadable = self._read()
        total = errors = 0
        for name, (now_total, now_errors) in counts.items():
            then_total, then_errors = self.baseline.get(name, (0, 0))
            if now_total < then_total:  # the process restarted: its counters began again
                then_total = then_errors = 0
            total, errors = total + now_total - then_total, errors + now_errors - then_errors
        return judge(self.colour, total, errors, self.cfg, unreadable=unreadable, read=bool(counts))


def judge(colour: str, total: int, errors: int, cfg: ReleaseConfig, *, unreadable: list[str] = (),
          read: bool = True) -> Verdict:
    """The error-rate verdict on ``total`` requests of which ``errors`` were 5xx."""
    figures = {"requests": total, "errors": errors, "unreadable": list(unreadable),
               "rate_permille": round(1000 * errors / total, 1) if total else None}
    bar, need = cfg.max_error_rate, cfg.min_requests
    # Judged only on enough requests: a few early errors are as inconclusive as a few early successes.
    if total >= need and errors / total > bar:
        return Verdict("error_rate", FAIL, f"{colour} answered {errors} of {total} requests with 5xx"
                       f" ({1000 * errors / total:.1f} per 1000, above {cfg.max_error_permille})", figures)
    if unreadable and not read:
        return Verdict("error_rate", INCONCLUSIVE, f"no {colour} target's metrics could be read"
                       f" ({'; '.join(unreadable[:3])})", figures)
    if total < need:
        return Verdict("error_rate", INCONCLUSIVE, f"{colour} served {total} requests, fewer than the"
                       f" {need} needed to judge its error rate", figures)
    return Verdict("error_rate", PASS, f"{colour}: {errors} 5xx of {total} requests", figures)
