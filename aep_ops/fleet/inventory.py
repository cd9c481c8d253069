"""Which hosts an environment has, and how to reach each one over SSH.

Hosts come from the environment's ``hosts:`` list (``inventory.source: config``, the
default) or from EC2 tags (``inventory.source: ec2``: running instances tagged
``aep:env=<env>`` and ``aep:role=<role>``, one ``describe_instances`` per call, so a run
sees one consistent fleet). ``--hosts`` overrides both for ad-hoc use. boto3 and paramiko
are imported inside functions: the CLI imports this module to list tasks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.fleet.defaults import DEFAULT_PARALLEL

if TYPE_CHECKING:  # pragma: no cover
    from aep_ops.executors.ssh import SshExecutor

DEFAULT_TAG_ENV = "aep:env"
DEFAULT_TAG_ROLE = "aep:role"
HEALTH_URL_TAG = "aep:health_url"
DEFAULT_CONNECT_TIMEOUT = 10
_ADDRESS_KEYS = {"private_ip": "PrivateIpAddress", "public_ip": "PublicIpAddress", "private_dns": "PrivateDnsName"}
# A user, a DNS name or IPv4 address, an IPv6 address: none may begin with "-" (ssh-keyscan,
# ssh-keygen and ssh would read it as an option) or hold whitespace, a control character or a
# shell metacharacter. One rule for --host, --hosts and the inventory.
_USER = r"[A-Za-z0-9_][A-Za-z0-9._-]*\$?"
_NAME_ADDRESS = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_V6_ADDRESS = r"[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"
_SPEC = re.compile(rf"(?:(?P<user>{_USER})@)?(?:\[(?P<v6>{_V6_ADDRESS})\]|(?P<addr>{_NAME_ADDRESS}))(?::(?P<port>\d+))?")
_ADDRESS = re.compile(rf"{_NAME_ADDRESS}|{_V6_ADDRESS}")
EMPTY_HOSTS = "--hosts is empty: name at least one host, or leave the flag out to use the inventory"
EMPTY_ROLE = "--role is empty: name a role, or leave the flag out to use every host"


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


def hosts_flag(value: str | None) -> list[str] | None:
    """``--hosts`` as given: None when the flag is absent (the inventory), else its entries.
    Given but blank (``""``, ``","``, ``" , "``) is a mistake, never "every host"."""
    if value is None:
        return None
    entries = [e.strip() for e in str(value).split(",") if e.strip()]
    if not entries:
        raise UsageError(EMPTY_HOSTS)
    return entries


def role_flag(value: str | None) -> str | None:
    """``--role`` as given: None when absent (every role); given but blank is a mistake."""
    if value is None:
        return None
    if not str(value).strip():
        raise UsageError(EMPTY_ROLE)
    return str(value).strip()


def hosts_for(settings: Any, *, role: str | None = None, override: Iterable[str] | None = None,
              flag: str = "--hosts") -> list[Host]:
    """The hosts to act on, in inventory order. ``override`` (``--hosts``, or ``flag``) wins
    over the inventory; its entries are configured host names or ``[user@]address[:port]``.
    An override given but empty is refused (None, not [], means "the inventory")."""
    env_name = settings.env_name
    if override is not None:
        return _from_override(settings, list(override), flag)  # --role does not filter an explicit list
    if role is not None and not role.strip():
        raise UsageError(EMPTY_ROLE)
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


def parse_host_spec(spec: str, *, default_user: str = "root", default_port: int = 22,
                    flag: str = "--hosts") -> Host:
    """``[user@]address[:port]`` (IPv6 as ``[addr]:port``) -> Host named after its address.
    Nothing that begins with "-" gets through: it would reach ssh-keyscan or ssh as an option."""
    what = f"{flag} entry {spec!r}" if flag == "--hosts" else f"{flag} {spec!r}"
    if spec.strip().startswith("-") or "@-" in spec:
        raise UsageError(f"{what} begins with '-': a host, address or user never does (a program would read it"
                         " as an option); give [user@]address[:port], e.g. admin@10.0.1.5:22")
    match = _SPEC.fullmatch(spec.strip())
    if not match:
        raise UsageError(f"{what} is not [user@]address[:port] (e.g. admin@10.0.1.5:22)")
    address = match["v6"] or match["addr"]
    port = int(match["port"]) if match["port"] else default_port
    if not 0 < port < 65536:
        raise UsageError(f"{what}: port {port} is out of range")
    host_part = f"[{address}]" if ":" in address else address
    name = address if port == 22 else f"{host_part}:{port}"
    return Host(name=name, address=address, port=port, user=match["user"] or default_user)


def executor_for(settings: Any, host: Host, *, identity: str | None = None,
                 known_hosts: str | None = None) -> SshExecutor:
    """An SshExecutor for ``host`` with the environment's SSH settings (flags win). Strict
    host-key checking always: without a known_hosts file there is no connection. The identity
    and known_hosts are checked here, before any connection (ConfigError: exit 2)."""
    from aep_ops.executors.ssh import SshExecutor
    from aep_ops.fleet.sshsetup import ssh_files

    ssh = _ssh(settings)
    key, known = ssh_files(settings, identity=identity, known_hosts=known_hosts, host=host)
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
    for number, entry in enumerate(settings.env.get("hosts") or []):
        where = f"environments.{settings.env_name}.hosts[{number}]"
        host = Host(
            name=entry["name"], address=entry["address"], port=int(entry.get("port") or 22),
            user=entry.get("user") or default_user, role=entry.get("role"),
            instance_id=entry.get("instance_id"), health_url=entry.get("health_url"),
        )
        _check_entry(host, where, user_key="user" if entry.get("user") else None, settings=settings)
        hosts.append(host)
    names = [h.name for h in hosts]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"environments.{settings.env_name}.hosts: duplicate name(s) {', '.join(dupes)}; "
                          "host names must be unique")
    return hosts


def _from_override(settings: Any, specs: list[str], flag: str) -> list[Host]:
    """Configured names resolve to their inventory entry (config source only: no AWS call
    for an ad-hoc list); anything else is parsed as an address."""
    specs = [s.strip() for s in specs if s and s.strip()]
    if not specs:
        raise UsageError(EMPTY_HOSTS if flag == "--hosts" else f"{flag} is empty: name a host")
    known = {}
    if (_inventory(settings).get("source") or "config") == "config":
        known = {h.name: h for h in _from_config(settings)}
    default_user = _default_user(settings)
    hosts = [known[spec] if spec in known else parse_host_spec(spec, default_user=default_user, flag=flag)
             for spec in specs]
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
        host = Host(
            name=tags.get("Name") or inst["InstanceId"], address=address, user=default_user,
            role=tags.get(tag_role), instance_id=inst["InstanceId"], health_url=tags.get(HEALTH_URL_TAG),
        )
        _check_ec2_name(host)
        hosts.append(host)
    hosts.sort(key=lambda h: (h.name, h.instance_id or ""))
    if role is None or not hosts:
        return hosts
    chosen = [h for h in hosts if h.role == role]
    if not chosen:
        raise UsageError(_unknown_role(settings.env_name, role, hosts, tag=tag_role))
    return chosen


# -- helpers ----------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a host name (None if it can): names are selected with --hosts
    (comma-separated), printed one per line and journaled, and may reach a command line."""
    if not name:
        return "is empty"
    if name.startswith("-"):
        return "begins with '-' (a program would read it as an option)"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "contains whitespace or a control character"
    if "," in name:
        return "contains ',' (--hosts separates names with commas)"
    return None


def _check_entry(host: Host, where: str, *, user_key: str | None, settings: Any) -> None:
    """ConfigError naming the entry and the value when a name, address, user or port is unusable."""
    problem = name_problem(host.name)
    if problem:
        raise ConfigError(f"{where}.name {host.name!r} {problem}; rename the host")
    if not _ADDRESS.fullmatch(host.address):
        reason = "begins with '-'" if host.address.startswith("-") else "is not a DNS name or an IP address"
        raise ConfigError(f"{where}.address {host.address!r} {reason}; fix the inventory entry")
    if not re.fullmatch(_USER, host.user):
        key = f"{where}.{user_key}" if user_key else f"environments.{settings.env_name}.ssh.user"
        reason = "begins with '-'" if host.user.startswith("-") else "is not a user name"
        raise ConfigError(f"{key} {host.user!r} {reason}; set a login user such as admin")
    if not 0 < host.port < 65536:
        raise ConfigError(f"{where}.port {host.port} is out of range (1-65535)")


def _check_ec2_name(host: Host, tag: str = "Name") -> None:
    problem = name_problem(host.name)
    if problem:
        raise ConfigError(f"EC2 instance {host.instance_id}: tag {tag} {host.name!r} {problem}; rename the"
                          " instance, since aep-ops names hosts after it")


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
    user = _ssh(settings).get("user") or "root"
    if not re.fullmatch(_USER, user):
        reason = "begins with '-'" if user.startswith("-") else "is not a user name"
        raise ConfigError(f"environments.{settings.env_name}.ssh.user {user!r} {reason}; set a login user such as"
                          " admin")
    return user


__all__ = ["Host", "hosts_for", "hosts_flag", "role_flag", "executor_for", "parse_host_spec", "parallel_for",
           "name_problem", "DEFAULT_PARALLEL"]
