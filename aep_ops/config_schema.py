"""The configuration schema and its validator.

Each layer (a file, the environment, the command line) is checked on its own, so an
error names the key *and where it came from*; required values are checked once the
layers are merged. Model: Patroni's validator, reduced to what aep-ops needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aep_ops.errors import ConfigError
from aep_ops.secrets import parse_ref


@dataclass(frozen=True)
class Field:
    """A leaf value. ``kind`` is a Python type, a tuple of allowed strings, or ``"secret"``."""

    kind: Any
    help: str = ""
    required: bool = False
    nullable: bool = True


@dataclass(frozen=True)
class Section:
    """A mapping with fixed keys."""

    fields: dict[str, Any]
    help: str = ""


@dataclass(frozen=True)
class MapOf:
    """A mapping with free keys (environment names, endpoint names) and one value schema."""

    value: Any
    help: str = ""


@dataclass(frozen=True)
class ListOf:
    item: Any
    help: str = ""


def _str() -> Field:
    return Field(str)


def _int(help: str = "") -> Field:
    return Field(int, help)


SSH = Section({
    "user": _str(),
    "identity": Field(str, "path of the private key to log in with"),
    "known_hosts": Field(str, "known_hosts file that host keys are checked against"),
    "connect_timeout": _int("seconds"),
    "command_timeout": _int("seconds"),
})

AWS = Section({
    "region": _str(),
    "profile": _str(),
    "endpoint_url": Field(str, "override every AWS endpoint (tests: the moto server)"),
    "ca_bundle": Field(str, "CA certificates to verify AWS endpoints with (a private endpoint or proxy)"),
})

DATABASE = Section({
    "host": _str(),
    "port": _int(),
    "name": _str(),
    "user": _str(),
    "password": Field("secret"),
    "sslmode": Field(("disable", "allow", "prefer", "require", "verify-ca", "verify-full")),
})

OBJECTIVES = Section({
    "rto_seconds": _int("recovery time objective"),
    "rpo_seconds": _int("recovery point objective"),
})

POSTGRES = Section({
    "bindir": Field(str, "PostgreSQL binaries (default /usr/lib/postgresql/15/bin)"),
    "os_user": Field(str, "OS user that runs the local server (default postgres)"),
    "port": Field(int, "port of the local AEP source cluster"),
    "dbname": Field(str, "the application database"),
    "archive_timeout": Field(int, "seconds; bounds the RPO of a quiet database"),
    "settings": MapOf(Field(str), "extra postgresql.conf settings for the local source"),
})

S3_REPO = Section({
    "bucket": Field(str),
    "endpoint": Field(str, "host name of the S3 endpoint"),
    "port": Field(int),
    "region": Field(str),
    "path": Field(str, "path inside the bucket"),
    "key": Field("secret", "access key id"),
    "key_secret": Field("secret", "secret access key"),
    "cipher_pass": Field("secret", "AES-256 repository encryption passphrase"),
    "verify_tls": Field(bool),
    "ca_file": Field(str),
    "retention_full": Field(int),
})

BACKUP = Section({
    "stanza": Field(str),
    "repo_path": Field(str, "repo1 on local disk (default STATE_DIR/pgbackrest/repo)"),
    "retention_full": Field(int, "full backups kept in repo1"),
    "process_max": Field(int),
    "pgbackrest_bin": Field(str, "path of the pgbackrest program (default /usr/bin/pgbackrest)"),
    "max_age_hours": Field(int, "a drill takes a new backup when the newest is older than this"),
    "s3": S3_REPO,
})

DRILL = Section({
    "scale": Field(int, "size of the seeded local AEP database"),
    "critical_tables": ListOf(Field(str), "tables whose row counts must match the source as of the target"),
    "smoke_queries": ListOf(Field(str), "queries that must succeed (and return a row) on the restored copy"),
    "metrics_file": Field(str, "Prometheus text-format file (default STATE_DIR/metrics/aep_ops_dr.prom)"),
    "restore_timeout": Field(int, "seconds allowed for restore + recovery"),
})

RDS = Section({
    "instance_id": Field(str, "the source DB instance identifier"),
    "instance_class": Field(str, "class of restored instances (default: the source's)"),
    "retention_days": Field(int, "automated backup retention the policy requires"),
    "master_user": Field(str),
    "master_password": Field("secret"),
    "dbname": Field(str),
    "endpoint_map": MapOf(Field(str), "tests: instance id -> host:port to verify against instead"),
    "cutover": Section({
        "route53_zone_id": Field(str), "record_name": Field(str),
        "secret_id": Field(str, "Secrets Manager secret holding the application's DSN"),
    }),
})

HOST = Section({
    "name": Field(str, "inventory name", required=True, nullable=False),
    "address": Field(str, "IP or DNS name to SSH to", required=True, nullable=False),
    "port": Field(int),
    "user": Field(str),
    "role": Field(str, "e.g. api, web, worker"),
    "instance_id": Field(str, "EC2 instance id (load balancer registration, SSM)"),
    "health_url": Field(str, "the application's health endpoint on this host"),
})

INVENTORY = Section({
    "source": Field(("config", "ec2"), "hosts from `hosts:` below, or discovered from EC2 tags"),
    "tag_env": Field(str, "EC2 tag whose value is the environment name (default aep:env)"),
    "tag_role": Field(str, "EC2 tag whose value is the role (default aep:role)"),
    "address": Field(("private_ip", "public_ip", "private_dns"), "which EC2 address to SSH to"),
    "parallel": Field(int, "default bound on concurrent SSH sessions"),
})

PATCHING = Section({
    "upgrade_command": ListOf(Field(str), "argv of the package upgrade (default: apt-get, non-interactive)"),
    "pending_command": ListOf(Field(str), "argv that prints pending upgrades, one per line"),
    "reboot_command": ListOf(Field(str), "argv that reboots the host"),
    "upgrade_log": Field(str, "file on each host that keeps the upgrade's output, so the upgrade finishes even"
                              " if aep-ops goes away; {host} is the host's name"
                              " (default /var/tmp/aep-ops-upgrade-{host}.log)"),
    "min_healthy": Field(int, "hosts that must stay in service (default: 2 in production, 1 elsewhere)"),
    "health_checks": Field(int, "consecutive OK answers required"),
    "health_timeout": Field(int, "seconds to wait for health after the upgrade/reboot"),
    "reboot_timeout": Field(int, "seconds to wait for SSH to come back after a reboot"),
    "drain_timeout": Field(int, "seconds to wait for load-balancer draining"),
    "target_group_arns": ListOf(Field(str), "ALB target groups the hosts serve in"),
    "asg_name": Field(str, "Auto Scaling group (standby instead of deregistration)"),
    "lb": Field(("elbv2", "asg", "none"), "how a host is taken out of service"),
})

ENVIRONMENT = Section({
    "description": _str(),
    "production": Field(bool, "production changes need --yes or a chat approval", required=True, nullable=False),
    "backend": Field(("local", "rds"), "where the database runs", required=True, nullable=False),
    "ssh": SSH,
    "aws": AWS,
    "database": DATABASE,
    "objectives": OBJECTIVES,
    "postgres": POSTGRES,
    "backup": BACKUP,
    "drill": DRILL,
    "rds": RDS,
    "hosts": ListOf(HOST, "the fleet (inventory.source: config)"),
    "inventory": INVENTORY,
    "patching": PATCHING,
    "ssm": Section({"max_concurrency": Field(str), "max_errors": Field(str), "timeout": Field(int),
                    "document": Field(str, "default AWS-RunShellScript")}),
    "endpoints": MapOf(Field(str), "name -> URL or host:port that `doctor` checks is reachable"),
})

SCHEMA = Section({
    "state_dir": Field(str, "journal, logs, locks, reports (default /var/lib/aep-ops as root)"),
    "default_env": Field(str, "environment used when --env is not given"),
    "plugins": ListOf(Field(str), "extra Python modules that register runbooks"),
    "runbook_dirs": ListOf(Field(str), "extra directories with runbook Markdown files"),
    "log": Section({"level": Field(("debug", "info", "warning", "error"))}),
    "journal": Section({"dsn": Field("secret", "PostgreSQL journal and locks shared by several ops hosts")}),
    "vault": Section({"addr": _str(), "token": Field("secret")}),
    "environments": MapOf(ENVIRONMENT),
})


def check_layer(data: Any, source: str, schema: Any = SCHEMA, path: str = "") -> Any:
    """Validate one layer's raw data; return it with secret references parsed.

    Raises ConfigError naming the dotted key and ``source`` on an unknown key or wrong type.
    """
    if isinstance(schema, Section):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: '{path or 'top level'}' must be a mapping, got {_typename(data)}")
        out = {}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in schema.fields:
                known = ", ".join(sorted(schema.fields))
                raise ConfigError(f"{source}: unknown key '{sub}' (known here: {known})")
            out[key] = check_layer(value, source, schema.fields[key], sub)
        return out
    if isinstance(schema, MapOf):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: '{path}' must be a mapping, got {_typename(data)}")
        return {str(k): check_layer(v, source, schema.value, f"{path}.{k}") for k, v in data.items()}
    if isinstance(schema, ListOf):
        if not isinstance(data, list):
            raise ConfigError(f"{source}: '{path}' must be a list, got {_typename(data)}")
        return [check_layer(v, source, schema.item, f"{path}[{i}]") for i, v in enumerate(data)]
    return _check_field(data, source, schema, path)


def _check_field(value: Any, source: str, spec: Field, path: str) -> Any:
    if value is None:
        if not spec.nullable:
            raise ConfigError(f"{source}: '{path}' must not be empty")
        return None
    if spec.kind == "secret":
        return parse_ref(value, where=f"{source}: '{path}'")
    if isinstance(spec.kind, tuple):
        if value not in spec.kind:
            raise ConfigError(f"{source}: '{path}' is {value!r}; expected one of: {', '.join(spec.kind)}")
        return value
    if spec.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: '{path}' must be an integer, got {_typename(value)} {value!r}")
    if spec.kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: '{path}' must be true or false, got {_typename(value)} {value!r}")
    if spec.kind is str and not isinstance(value, str):
        raise ConfigError(f"{source}: '{path}' must be a string, got {_typename(value)} {value!r}")
    return value


def check_required(data: dict, sources: dict[str, str], schema: Any = SCHEMA, path: str = "") -> None:
    """After merging: every required value is set. The error says which file defines the parent."""
    if isinstance(schema, Section):
        for key, sub in schema.fields.items():
            sub_path = f"{path}.{key}" if path else key
            if isinstance(sub, Field):
                if sub.required and data.get(key) is None:
                    where = sources.get(path, "the configuration")
                    raise ConfigError(f"{where}: '{sub_path}' is required ({sub.help})")
            elif key in data and data[key] is not None:
                check_required(data[key], sources, sub, sub_path)
    elif isinstance(schema, MapOf) and not isinstance(schema.value, Field):
        for key, value in data.items():
            check_required(value, sources, schema.value, f"{path}.{key}")
    elif isinstance(schema, ListOf) and isinstance(schema.item, Section):
        for index, value in enumerate(data):
            sources.setdefault(f"{path}[{index}]", sources.get(path, "the configuration"))
            check_required(value, sources, schema.item, f"{path}[{index}]")


def schema_at(path: list[str], schema: Any = SCHEMA) -> Any:
    """The schema node for a dotted path (used to build one-key layers from env vars and flags)."""
    for part in path:
        if isinstance(schema, Section) and part in schema.fields:
            schema = schema.fields[part]
        elif isinstance(schema, MapOf):
            schema = schema.value
        else:
            return None
    return schema


def _typename(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer",
            float: "a number", bool: "a boolean"}.get(type(value), type(value).__name__)


__all__ = ["Field", "Section", "MapOf", "ListOf", "SCHEMA", "check_layer", "check_required", "schema_at"]
