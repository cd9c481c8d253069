"""Fleet operations behind ``fleet.run`` and ``fleet.facts``: one command on many hosts.

The domain half of the fleet tasks (no invoke here): chat-ops and other runbooks call
these functions directly. SSH fan-out is ``executors.fleet.run_on_all`` (bounded pool, one
global deadline); SSM goes through ``executors.ssm.run_via_ssm``. Both give a FleetResult.
``fleet.trust`` helpers (keyscan, known_hosts check and append) are at the end.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from aep_ops.errors import ApprovalRequired, HostKeyError, HostUnreachable, UsageError
from aep_ops.executors.base import FleetResult, HostOutcome
from aep_ops.fleet.inventory import Host, executor_for, hosts_for

DEFAULT_PARALLEL = 10
DEFAULT_TIMEOUT = 60.0


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
    from aep_ops.log import audit

    command = (command or "").strip()
    if not command:
        raise UsageError("no command given: put it after `--`, e.g. `inv fleet.run --env staging -- uptime`")
    if via not in ("ssh", "ssm"):
        raise UsageError(f"--via {via!r}: expected ssh or ssm")
    targets = hosts_for(settings, role=role, override=hosts)
    parallel = _parallel(settings, parallel)
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
        result = _run_ssh(settings, targets, None, identity=identity, known_hosts=known_hosts, parallel=parallel,
                          timeout=timeout, shell=command)
    run = FleetRun(settings.env_name, command, via, tuple(targets), result, time.monotonic() - started)
    audit(settings.state_dir, "fleet.run", target=where, args=audit_args,
          result="ok" if run.ok else "failed", outcomes={h.name: o.status for h, o in run.pairs()})
    return run


# -- facts ------------------------------------------------------------------------------------

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
    result = _run_ssh(settings, targets, ["sh", "-c", FACTS_SCRIPT], identity=identity, known_hosts=known_hosts,
                      parallel=_parallel(settings, parallel), timeout=timeout)
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


# -- backends ---------------------------------------------------------------------------------


def _run_ssh(settings: Any, targets: list[Host], argv: list[str] | None, *, identity: str | None,
             known_hosts: str | None, parallel: int, timeout: float, shell: str | None = None) -> FleetResult:
    """argv (quoted for the remote shell) or ``shell``, a command line sent as typed."""
    from aep_ops.executors.fleet import run_on_all

    if timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {timeout:g}")
    executors = [executor_for(settings, h, identity=identity, known_hosts=known_hosts) for h in targets]
    for ex in executors:  # a connect may not outlive the run's deadline
        ex.connect_timeout = min(ex.connect_timeout, timeout)
    runners = executors if shell is None else [_AsTyped(ex, shell) for ex in executors]
    try:
        return run_on_all(runners, argv or [shell or ""], parallel=parallel, timeout=timeout)
    finally:
        for ex in executors:
            ex.close()


class _AsTyped:
    """Adapter for run_on_all (which passes argv): sends the user's command line unquoted."""

    def __init__(self, executor: Any, command: str) -> None:
        self.executor, self.command, self.target = executor, command, executor.target

    def run(self, argv: Sequence[str], *, timeout: float | None = None, **_: Any) -> Any:
        return self.executor.run_shell(self.command, timeout=timeout)

    def close(self) -> None:
        self.executor.close()


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


def _parallel(settings: Any, parallel: int | None) -> int:
    value = parallel or (settings.env.get("inventory") or {}).get("parallel") or DEFAULT_PARALLEL
    if int(value) < 1:
        raise UsageError(f"--parallel must be at least 1, not {value}")
    return int(value)


def _outcome_json(host: Host, outcome: HostOutcome) -> dict[str, Any]:
    r = outcome.result
    return {"name": host.name, "target": outcome.target, "status": outcome.status, "error": outcome.error,
            "exit_status": None if r is None else r.exit_status, "stdout": None if r is None else r.stdout,
            "stderr": None if r is None else r.stderr, "duration": None if r is None else round(r.duration, 3)}


# -- host-key trust ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ScannedKey:
    """One host key offered by a host, as a known_hosts line and its SHA256 fingerprint."""

    entry: str
    key_type: str
    blob: str
    fingerprint: str


def scan_host_keys(address: str, port: int = 22, *, timeout: int = 5) -> list[ScannedKey]:
    """``ssh-keyscan`` the host (no authentication, nothing trusted yet)."""
    import base64
    import binascii

    from aep_ops.executors.local import LocalExecutor
    from aep_ops.executors.ssh import fingerprint

    result = LocalExecutor().run(["ssh-keyscan", "-T", str(timeout), "-p", str(port), address], timeout=timeout + 5)
    keys = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 3 or line.startswith("#"):
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        keys.append(ScannedKey(" ".join(fields[:3]), fields[1], fields[2], fingerprint(blob)))
    if not keys:
        why = result.stderr_tail(1) or f"ssh-keyscan exited {result.exit_status}"
        raise HostUnreachable(f"{address}:{port}: no SSH host key could be read ({why}); check the address, "
                              "the port and that sshd runs there")
    return sorted(keys, key=lambda k: k.key_type)


def recorded_keys(known_hosts: str, address: str, port: int = 22) -> list[tuple[str, str]]:
    """(key type, base64 blob) recorded for the host in known_hosts, hashed entries included
    (``ssh-keygen -F`` does the matching, as ssh itself would)."""
    import os

    from aep_ops.executors.local import LocalExecutor

    if not os.path.isfile(known_hosts):
        return []
    name = address if port == 22 else f"[{address}]:{port}"
    result = LocalExecutor().run(["ssh-keygen", "-F", name, "-f", known_hosts], timeout=30)
    found = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 3:
            continue
        if fields[0].startswith("@"):  # @cert-authority / @revoked markers: not a plain host key
            continue
        found.append((fields[1], fields[2]))
    return found


def new_keys(scanned: list[ScannedKey], recorded: list[tuple[str, str]], *, known_hosts: str,
             address: str, port: int) -> list[ScannedKey]:
    """The scanned keys not yet recorded. A recorded key of the same type with another value
    is a changed host key: refuse, as ssh does, and say how to replace it deliberately."""
    have = set(recorded)
    for key in scanned:
        clash = [blob for kind, blob in recorded if kind == key.key_type and blob != key.blob]
        if clash and (key.key_type, key.blob) not in have:
            entry = address if port == 22 else f"[{address}]:{port}"
            raise HostKeyError(
                f"{address}:{port}: SSH HOST KEY CHANGED: it offers {key.key_type} {key.fingerprint}, but "
                f"{known_hosts} records another {key.key_type} key. It may be a man-in-the-middle or a rebuilt "
                f"host: confirm the new key out of band, then remove the old one "
                f"(`ssh-keygen -R '{entry}' -f {known_hosts}`) and trust again")
    return [k for k in scanned if (k.key_type, k.blob) not in have]


def append_known_hosts(known_hosts: str, keys: list[ScannedKey]) -> None:
    """Append entries with one write (created 0600 with its directory when missing)."""
    import os

    os.makedirs(os.path.dirname(os.path.abspath(known_hosts)), exist_ok=True)
    fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        needs_newline = os.path.getsize(known_hosts) > 0 and not _ends_with_newline(known_hosts)
        data = ("\n" if needs_newline else "") + "".join(k.entry + "\n" for k in keys)
        os.write(fd, data.encode("ascii"))
    finally:
        os.close(fd)


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"
