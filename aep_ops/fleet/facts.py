"""``fleet.facts``: what each host is (OS, kernel, uptime, pending and security updates,
reboot required), read in one bounded fan-out. Read-only: no approval, no audit.

Reads apart from actions (pyinfra keeps ``facts/`` beside ``operations/``): ``FACTS_SCRIPT``
is the probe, ``parse_facts`` turns its output into fields, and no code here changes a host.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Sequence

from aep_ops.fleet.defaults import DEFAULT_TIMEOUT
from aep_ops.fleet.fanout import run_ssh
from aep_ops.fleet.inventory import Host, hosts_for, parallel_for

# One compound command per host, read-only. Sections are marked so that a missing tool or
# file leaves its fact unknown instead of shifting the others. `apt list` reads the local
# package lists (no `apt update`): counts are as of the host's last list refresh.
FACTS_SCRIPT = "; ".join([
    "echo @@os-release", "cat /etc/os-release 2>/dev/null",
    "echo @@kernel", "uname -r",
    "echo @@uptime", "cat /proc/uptime 2>/dev/null",
    "echo @@reboot-required", "if [ -e /var/run/reboot-required ]; then echo yes; else echo no; fi",
    "echo @@apt",
    "if command -v apt >/dev/null 2>&1; then LC_ALL=C apt list --upgradable 2>/dev/null; echo @@apt-rc=$?; fi",
    "echo @@end",
])


@dataclass(frozen=True)
class HostFacts:
    """What ``fleet.facts`` learned about one host (None = unknown)."""

    host: Host
    status: str
    error: str | None = None
    os: str | None = None
    os_id: str | None = None
    os_version: str | None = None
    kernel: str | None = None
    uptime_seconds: float | None = None
    updates: int | None = None
    security_updates: int | None = None
    reboot_required: bool | None = None
    packages: tuple[str, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.host.name, "target": self.host.target, "status": self.status, "error": self.error,
                "os": self.os, "os_id": self.os_id, "os_version": self.os_version, "kernel": self.kernel,
                "uptime_seconds": self.uptime_seconds, "updates": self.updates,
                "security_updates": self.security_updates, "reboot_required": self.reboot_required,
                "packages": list(self.packages)}


def gather_facts(settings: Any, *, role: str | None = None, hosts: Sequence[str] | None = None,
                 identity: str | None = None, known_hosts: str | None = None, parallel: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> list[HostFacts]:
    """Facts of every chosen host in one bounded fan-out (read-only: no approval, no audit)."""
    targets = hosts_for(settings, role=role, override=hosts)
    result = run_ssh(settings, targets, ["sh", "-c", FACTS_SCRIPT], identity=identity, known_hosts=known_hosts,
                      parallel=parallel_for(settings, parallel), timeout=timeout)
    facts = []
    for host, outcome in zip(targets, result.outcomes):
        if outcome.status == "unreachable":
            facts.append(HostFacts(host, "unreachable", error=outcome.error))
            continue
        assert outcome.result is not None
        parsed = parse_facts(outcome.result.stdout)
        error = None if outcome.result.ok else outcome.result.describe()
        facts.append(HostFacts(host, outcome.status, error=error, **parsed))
    return facts


def parse_facts(stdout: str) -> dict[str, Any]:
    """The output of FACTS_SCRIPT -> HostFacts fields; anything missing or garbled is None."""
    sections = _sections(stdout)
    release = _os_release(sections.get("os-release", []))
    facts: dict[str, Any] = {
        "os": release.get("PRETTY_NAME") or " ".join(filter(None, [release.get("NAME"), release.get("VERSION")]))
        or None,
        "os_id": release.get("ID"), "os_version": release.get("VERSION_ID"),
        "kernel": next(iter(sections.get("kernel", [])), None) or None,
        "uptime_seconds": _uptime(sections.get("uptime", [])),
        "reboot_required": {"yes": True, "no": False}.get(next(iter(sections.get("reboot-required", [])), "")),
    }
    apt = sections.get("apt")
    if apt is not None and "@@apt-rc=0" in apt:
        packages = [line for line in apt if "/" in line and "[upgradable from" in line]
        facts["packages"] = tuple(line.split("/", 1)[0] for line in packages)
        facts["updates"] = len(packages)
        facts["security_updates"] = sum(1 for line in packages if _is_security(line))
    return facts


def _sections(stdout: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in stdout.splitlines():
        line = raw.strip()
        if line.startswith("@@") and not line.startswith("@@apt-rc="):
            current = sections.setdefault(line[2:], [])
        elif current is not None and line:
            current.append(line)
    return sections


def _os_release(lines: list[str]) -> dict[str, str]:
    values = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            try:
                values[key] = " ".join(shlex.split(value))
            except ValueError:
                values[key] = value.strip("\"'")
    return values


def _uptime(lines: list[str]) -> float | None:
    try:
        return float(lines[0].split()[0])
    except (IndexError, ValueError):
        return None


def _is_security(line: str) -> bool:
    """``pkg/jammy-updates,jammy-security 1.2 amd64 [upgradable from: 1.1]``: any security suite."""
    suites = line.split("/", 1)[1].split(" ", 1)[0]
    return any(s.endswith("-security") or s == "security" for s in suites.split(","))
