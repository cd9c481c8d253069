"""``fleet.run``: one shell command on many hosts, over SSH or SSM Run Command.

The domain half of the task (no invoke here): chat-ops and other runbooks call
``run_command`` directly. SSH fan-out is ``fleet.fanout.run_ssh`` (over
``executors.fleet.run_on_all``: bounded pool, one global deadline); SSM goes through
``executors.ssm.run_via_ssm``. Both give a FleetResult. Read-only facts are in facts.py,
host-key trust in hostkeys.py and runbooks.py (``fleet.trust``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from aep_ops.base.errors import ApprovalRequired, UsageError
from aep_ops.executors.base import FleetResult, HostOutcome
from aep_ops.fleet.defaults import DEFAULT_TIMEOUT
from aep_ops.fleet.fanout import run_ssh
from aep_ops.fleet.inventory import Host, hosts_for, parallel_for


@dataclass(frozen=True)
class FleetRun:
    """One command's outcome over the fleet, host by host, in inventory order."""

    env: str
    command: str
    via: str
    hosts: tuple[Host, ...]
    result: FleetResult
    duration: float

    @property
    def ok(self) -> bool:
        return self.result.ok

    def pairs(self) -> list[tuple[Host, HostOutcome]]:
        return list(zip(self.hosts, self.result.outcomes))

    def counts(self) -> dict[str, int]:
        counts = {"ok": 0, "failed": 0, "unreachable": 0}
        for outcome in self.result.outcomes:
            counts[outcome.status] += 1
        return counts

    def summary(self) -> str:
        c = self.counts()
        return (f"{len(self.hosts)} host(s): {c['ok']} ok, {c['failed']} failed, {c['unreachable']} unreachable "
                f"({self.duration:.1f}s)")

    def to_json(self) -> dict[str, Any]:
        return {"env": self.env, "command": self.command, "via": self.via, "ok": self.ok,
                "duration": round(self.duration, 3), "summary": self.counts(),
                "hosts": [_outcome_json(h, o) for h, o in self.pairs()]}


def run_command(settings: Any, command: str, *, role: str | None = None, hosts: Sequence[str] | None = None,
                identity: str | None = None, known_hosts: str | None = None, parallel: int | None = None,
                timeout: float = DEFAULT_TIMEOUT, via: str = "ssh", yes: bool = False) -> FleetRun:
    """Run a shell command (as the user typed it) on every chosen host; audited, and
    refused in production without ``yes`` before any host is contacted."""
    from aep_ops.base.log import audit

    command = (command or "").strip()
    if not command:
        raise UsageError("no command given: put it after `--`, e.g. `inv fleet.run --env staging -- uptime`")
    if via not in ("ssh", "ssm"):
        raise UsageError(f"--via {via!r}: expected ssh or ssm")
    targets = hosts_for(settings, role=role, override=hosts)
    parallel = parallel_for(settings, parallel)
    audit_args = {"command": command, "via": via, "role": role, "hosts": ",".join(h.name for h in targets),
                  "parallel": parallel, "timeout": timeout}
    where = f"{settings.env_name} ({len(targets)} host(s))"
    if settings.production and not yes:
        audit(settings.state_dir, "fleet.run", target=where, args=audit_args, result="refused: approval required")
        raise ApprovalRequired(f"fleet.run on production environment {settings.env_name} ({len(targets)} host(s)) "
                               "needs --yes; nothing was run")
    started = time.monotonic()
    if via == "ssm":
        result = _run_ssm(settings, targets, command, timeout)
    else:
        result = run_ssh(settings, targets, None, identity=identity, known_hosts=known_hosts, parallel=parallel,
                         timeout=timeout, shell=command)
    run = FleetRun(settings.env_name, command, via, tuple(targets), result, time.monotonic() - started)
    audit(settings.state_dir, "fleet.run", target=where, args=audit_args,
          result="ok" if run.ok else "failed", outcomes={h.name: o.status for h, o in run.pairs()})
    return run


# -- backends ---------------------------------------------------------------------------------


def _run_ssm(settings: Any, targets: list[Host], command: str, timeout: float) -> FleetResult:
    from aep_ops.aws.clients import client
    from aep_ops.executors.ssm import run_via_ssm

    missing = [h.name for h in targets if not h.instance_id]
    if missing:
        raise UsageError(f"--via ssm needs an EC2 instance id for every host; none for: {', '.join(missing)} "
                         f"(set instance_id in environments.{settings.env_name}.hosts or use inventory.source: ec2)")
    ssm_conf = settings.env.get("ssm") or {}
    result = run_via_ssm(
        client(settings, "ssm"), [h.instance_id for h in targets], command,
        max_concurrency=str(ssm_conf.get("max_concurrency") or "10"), max_errors=str(ssm_conf.get("max_errors") or "1"),
        timeout=float(ssm_conf.get("timeout") or timeout), document=ssm_conf.get("document") or "AWS-RunShellScript",
    )
    return result


def _outcome_json(host: Host, outcome: HostOutcome) -> dict[str, Any]:
    r = outcome.result
    return {"name": host.name, "target": outcome.target, "status": outcome.status, "error": outcome.error,
            "exit_status": None if r is None else r.exit_status, "stdout": None if r is None else r.stdout,
            "stderr": None if r is None else r.stderr, "duration": None if r is None else round(r.duration, 3)}
