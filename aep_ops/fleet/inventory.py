"""Which hosts an environment has, and how to reach each one over SSH.

Hosts come from the environment's ``hosts:`` list (``inventory.source: config``, the
default) or from EC2 tags (``inventory.source: ec2``: running instances tagged
``aep:env=<env>`` and ``aep:role=<role>``, one ``describe_instances`` per call, so a run
sees one consistent fleet). ``--hosts`` overrides both for ad-hoc use. boto3 and paramiko
are imported inside functions: the CLI imports this module to list tasks.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from aep_ops.errors import ConfigError, UsageError
from aep_ops.fleet.defaults import DEFAULT_PARALLEL

if TYPE_CHECKING:  # pragma: no cover
    from aep_ops.executors.ssh import SshExecutor

DEFAULT_TAG_ENV = "aep:env"
DEFAULT_TAG_ROLE = "aep:role"
HEALTH_URL_TAG = "aep:health_url"
DEFAULT_CONNECT_TIMEOUT = 10
_ADDRESS_KEYS = {"private_ip": "PrivateIpAddress", "public_ip": "PublicIpAddress", "private_dns": "PrivateDnsName"}
_SPEC = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<addr>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Host:
    """One SSH-reachable host of the fleet."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    role: str | None = None
    instance_id: str | None = None
    health_url: str | None = None

    @property
    def target(self) -> str:
        """``user@address:port``, the way SshExecutor names its target."""
        return f"{self.user}@{self.address}:{self.port}"


def hosts_for(settings: Any, *, role: str | None = None, override: Iterable[str] | None = None) -> list[Host]:
    """The hosts to act on, in inventory order. ``override`` (``--hosts``) wins over the
    inventory; its entries are configured host names or ``[user@]address[:port]``."""
    env_name = settings.env_name
    if override:
        return _from_override(settings, list(override))  # --role does not filter an explicit list
    source = _inventory(settings).get("source") or "config"
    hosts = _from_ec2(settings, role) if source == "ec2" else _from_config(settings)
    if not hosts:
        where = (f"no running EC2 instance is tagged {_tag_env(settings)}={env_name}" if source == "ec2"
                 else f"environments.{env_name}.hosts is empty")
        raise UsageError(f"{where}: no hosts for environment {env_name}; "
                         f"configure the inventory or pass --hosts user@address[:port],...")
    if role is None or source == "ec2":
        return hosts
    chosen = [h for h in hosts if h.role == role]
    if not chosen:
        raise UsageError(_unknown_role(env_name, role, hosts))
    return chosen


def parse_host_spec(spec: str, *, default_user: str = "root", default_port: int = 22) -> Host:
    """``[user@]address[:port]`` (IPv6 as ``[addr]:port``) -> Host named after its address."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise UsageError(f"--hosts entry {spec!r} is not [user@]address[:port] (e.g. admin@10.0.1.5:22)")
    address = match["v6"] or match["addr"]
    port = int(match["port"]) if match["port"] else default_port
    if not 0 < port < 65536:
        raise UsageError(f"--hosts entry {spec!r}: port {port} is out of range")
    host_part = f"[{address}]" if ":" in address else address
    name = address if port == 22 else f"{host_part}:{port}"
    return Host(name=name, address=address, port=port, user=match["user"] or default_user)


def executor_for(settings: Any, host: Host, *, identity: str | None = None,
                 known_hosts: str | None = None) -> SshExecutor:
    """An SshExecutor for ``host`` with the environment's SSH settings (flags win). Strict
    host-key checking always: without a known_hosts file there is no connection."""
    from aep_ops.executors.ssh import SshExecutor

    ssh = _ssh(settings)
    prefix = f"environments.{settings.env_name}.ssh"
    known = _path(known_hosts or ssh.get("known_hosts"))
    if not known:
        raise ConfigError(f"{prefix}.known_hosts is not set: aep-ops checks every SSH host key and has nothing to "
                          f"check {host.address} against; set it (or pass --known-hosts FILE) and record keys "
                          f"with `inv fleet.trust {host.address} --port {host.port}`")
    if not os.path.isfile(known):
        raise ConfigError(f"known_hosts file {known} ({'--known-hosts' if known_hosts else prefix + '.known_hosts'}) "
                          f"does not exist; record host keys with `inv fleet.trust {host.address} --port {host.port}`")
    key = _path(identity or ssh.get("identity"))
    if not key:
        raise ConfigError(f"{prefix}.identity is not set: no SSH key to log in to {host.address} with; "
                          "set it to a private key path or pass --identity FILE")
    return SshExecutor(
        host.address, port=host.port, user=host.user, identity=key, known_hosts=known,
        connect_timeout=float(ssh.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT),
        command_timeout=float(ssh["command_timeout"]) if ssh.get("command_timeout") else None,
    )


def parallel_for(settings: Any, flag: int | None = None) -> int:
    """Hosts at a time in a fan-out (fleet.run, fleet.facts, patch.rolling's probes): the flag,
    else ``inventory.parallel``, else DEFAULT_PARALLEL."""
    value = flag or _inventory(settings).get("parallel") or DEFAULT_PARALLEL
    if int(value) < 1:
        source = "--parallel" if flag else f"environments.{settings.env_name}.inventory.parallel"
        raise UsageError(f"{source} must be at least 1, not {value}")
    return int(value)


# -- sources ----------------------------------------------------------------------------------


def _from_config(settings: Any) -> list[Host]:
    default_user = _default_user(settings)
    hosts = []
    for entry in settings.env.get("hosts") or []:
        hosts.append(Host(
            name=entry["name"], address=entry["address"], port=int(entry.get("port") or 22),
            user=entry.get("user") or default_user, role=entry.get("role"),
            instance_id=entry.get("instance_id"), health_url=entry.get("health_url"),
        ))
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"environments.{settings.env_name}.hosts: duplicate name(s) {', '.join(dupes)}; "
                          "host names must be unique")
    return hosts


def _from_override(settings: Any, specs: list[str]) -> list[Host]:
    """Configured names resolve to their inventory entry (config source only: no AWS call
    for an ad-hoc list); anything else is parsed as an address."""
    known = {}
    if (_inventory(settings).get("source") or "config") == "config":
        known = {h.name: h for h in _from_config(settings)}
    default_user = _default_user(settings)
    hosts: list[Host] = []
    for spec in (s.strip() for s in specs):
        if not spec:
            continue
        hosts.append(known[spec] if spec in known else parse_host_spec(spec, default_user=default_user))
    if not hosts:
        raise UsageError("--hosts is empty; give user@address[:port] entries separated by commas")
    return list(dict.fromkeys(hosts))  # a host named twice runs once


def _from_ec2(settings: Any, role: str | None) -> list[Host]:
    from aep_ops.aws.clients import aws_errors, client

    inventory = _inventory(settings)
    tag_env, tag_role = _tag_env(settings), inventory.get("tag_role") or DEFAULT_TAG_ROLE
    address_key = _ADDRESS_KEYS[inventory.get("address") or "private_ip"]
    filters = [{"Name": f"tag:{tag_env}", "Values": [settings.env_name]},
               {"Name": "instance-state-name", "Values": ["running"]}]
    ec2 = client(settings, "ec2")
    with aws_errors(ec2, f"discovering the hosts of {settings.env_name} from EC2 tags"):
        instances = [i for page in ec2.get_paginator("describe_instances").paginate(Filters=filters)
                     for r in page.get("Reservations", []) for i in r.get("Instances", [])]
    default_user = _default_user(settings)
    hosts = []
    for inst in instances:
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
        address = inst.get(address_key)
        if not address:
            continue  # e.g. no public IP: cannot be reached this way
        hosts.append(Host(
            name=tags.get("Name") or inst["InstanceId"], address=address, user=default_user,
            role=tags.get(tag_role), instance_id=inst["InstanceId"], health_url=tags.get(HEALTH_URL_TAG),
        ))
    hosts.sort(key=lambda h: (h.name, h.instance_id or ""))
    if role is None or not hosts:
        return hosts
    chosen = [h for h in hosts if h.role == role]
    if not chosen:
        raise UsageError(_unknown_role(settings.env_name, role, hosts, tag=tag_role))
    return chosen


# -- helpers ----------------------------------------------------------------------------------


def _unknown_role(env_name: str, role: str, hosts: list[Host], tag: str | None = None) -> str:
    roles = sorted({h.role for h in hosts if h.role})
    where = f"tagged {tag}={role}" if tag else f"with role {role!r}"
    return (f"no host of environment {env_name} {where} (roles present: {', '.join(roles) or 'none'}); "
            "pick one of those with --role, or omit --role")


def _inventory(settings: Any) -> dict:
    return settings.env.get("inventory") or {}


def _ssh(settings: Any) -> dict:
    return settings.env.get("ssh") or {}


def _tag_env(settings: Any) -> str:
    return _inventory(settings).get("tag_env") or DEFAULT_TAG_ENV


def _default_user(settings: Any) -> str:
    return _ssh(settings).get("user") or "root"


def _path(value: str | None) -> str | None:
    return os.path.expanduser(value) if value else None


__all__ = ["Host", "hosts_for", "executor_for", "parse_host_spec", "parallel_for", "DEFAULT_PARALLEL"]
