"""The configuration schema and its validator.

Each layer (a file, the environment, the command line) is checked on its own, so an
error names the key *and where it came from*; required values are checked once the
layers are merged. Model: Patroni's validator, reduced to what aep-ops needs.
"""

from __future__ import annotations

import os
import re
import reprlib
from dataclasses import dataclass
from typing import Any

from aep_ops.base.errors import ConfigError
from aep_ops.base.secrets import parse_ref

PREVIEW_CHARS = 80
# Names that end up in file names, lock names and environment variable names.
ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
ENV_NAME_HELP = "an environment name is 1-63 letters, digits, '-' and '_', starting with a letter"
PG_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,62}")
PATH_MAX = 4095
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = PREVIEW_CHARS
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 3, 4, 4


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters with an ellipsis, for every error that
    shows a value: a whole value (an alias bomb, a pasted file) must never become the message.
    reprlib bounds the work too, so a huge or self-referencing value costs no more than a small one."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def preview_text(text: str, limit: int = PREVIEW_CHARS) -> str:
    """Text as the user typed it (a flag, a key), unquoted, control characters escaped, cut like ``preview``."""
    shown = text if text.isprintable() else repr(text)[1:-1]
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


@dataclass(frozen=True)
class Field:
    """A leaf value. ``kind`` is a Python type, a tuple of allowed strings, ``"secret"``, ``"path"``
    (a local path: absolute, or ``~``-expanded to one at load) or ``"remote_path"`` (a path on another
    machine or in a bucket: absolute, no ``~``) or ``"scalar"`` (a string, number or boolean, typed
    later by its user: a runbook parameter). ``minimum``/``maximum`` bound an ``int``."""

    kind: Any
    help: str = ""
    required: bool = False
    nullable: bool = True
    minimum: int | None = None
    maximum: int | None = None


@dataclass(frozen=True)
class Section:
    """A mapping with fixed keys."""

    fields: dict[str, Any]
    help: str = ""


@dataclass(frozen=True)
class MapOf:
    """A mapping with free keys (environment names, endpoint names) and one value schema;
    ``keys``, when set, is the pattern every key must match."""

    value: Any
    help: str = ""
    keys: re.Pattern | None = None
    keys_help: str = ""


@dataclass(frozen=True)
class ListOf:
    item: Any
    help: str = ""


def _str() -> Field:
    return Field(str)


def _int(help: str = "", minimum: int | None = None, maximum: int | None = None) -> Field:
    return Field(int, help, minimum=minimum, maximum=maximum)


def _path(help: str = "") -> Field:
    return Field("path", help)


def _port(help: str = "") -> Field:
    return _int(help, 1, 65535)


DAY = 86400


SSH = Section({
    "user": _str(),
    "identity": _path("path of the private key to log in with"),
    "known_hosts": _path("known_hosts file that host keys are checked against"),
    "connect_timeout": _int("seconds", 1, 3600),
    "command_timeout": _int("seconds", 1, DAY),
})

AWS = Section({
    "region": _str(),
    "profile": _str(),
    "endpoint_url": Field(str, "override every AWS endpoint (tests: the moto server)"),
    "ca_bundle": _path("CA certificates to verify AWS endpoints with (a private endpoint or proxy)"),
})

DATABASE = Section({
    "host": _str(),
    "port": _port(),
    "name": _str(),
    "user": _str(),
    "password": Field("secret"),
    "sslmode": Field(("disable", "allow", "prefer", "require", "verify-ca", "verify-full")),
})

OBJECTIVES = Section({
    "rto_seconds": _int("recovery time objective", 1, 30 * DAY),
    "rpo_seconds": _int("recovery point objective", 0, 30 * DAY),
})

POSTGRES = Section({
    "bindir": _path("PostgreSQL binaries (default /usr/lib/postgresql/15/bin)"),
    "os_user": Field(str, "OS user that runs the local server (default postgres)"),
    "port": _port("port of the local AEP source cluster"),
    "dbname": Field(str, "the application database"),
    "archive_timeout": _int("seconds; bounds the RPO of a quiet database", 1, DAY),
    "settings": MapOf(Field(str), "extra postgresql.conf settings for the local source",
                      keys=PG_SETTING_NAME, keys_help="a PostgreSQL setting name is letters, digits, '_' and '.'"),
})

S3_REPO = Section({
    "bucket": Field(str),
    "endpoint": Field(str, "host name of the S3 endpoint"),
    "port": _port(),
    "region": Field(str),
    "path": Field("remote_path", "path inside the bucket"),
    "key": Field("secret", "access key id"),
    "key_secret": Field("secret", "secret access key"),
    "cipher_pass": Field("secret", "AES-256 repository encryption passphrase"),
    "verify_tls": Field(bool),
    "ca_file": _path(),
    "retention_full": _int("full backups kept in repo2", 1, 9999999),
})

BACKUP = Section({
    "stanza": Field(str),
    "repo_path": _path("repo1 on local disk (default STATE_DIR/pgbackrest/repo)"),
    "retention_full": _int("full backups kept in repo1", 1, 9999999),
    "process_max": _int("pgBackRest processes of a backup (default 2: the primary keeps its cores)", 1, 999),
    "restore_process_max": _int("pgBackRest processes of a restore (default: the cores of this machine)", 1, 999),
    "pgbackrest_bin": _path("path of the pgbackrest program (default /usr/bin/pgbackrest)"),
    "max_age_hours": _int("a drill takes a new backup when the newest is older than this", 1, 24 * 366),
    "s3": S3_REPO,
    "timeouts": Section({  # pgBackRest's own deadlines (aep_ops.pg.pgbackrest.Timeouts)
        "io": _int("seconds one read or write to a repository may stall (default 30)", 1, 3600),
        "db": _int("seconds one PostgreSQL query of pgBackRest may take (default 1800)", 1, DAY),
        "protocol": _int("seconds a silent pgBackRest worker is waited for; above db (default db + 30)", 2, DAY + 60),
        "archive": _int("seconds archive-push waits for the asynchronous pusher (default 60)", 1, 3600),
    }),
})

DRILL = Section({
    "scale": _int("size of the seeded local AEP database (1: a few thousand rows)", 1, 1000),
    "critical_tables": ListOf(Field(str), "tables whose row counts must match the source as of the target"),
    "smoke_queries": ListOf(Field(str), "queries that must succeed (and return a row) on the restored copy"),
    "metrics_file": _path("Prometheus file per environment: a template with {env}, a directory (then"
                          " aep_ops_dr_ENV.prom in it), or this environment's own file"
                          " (default aep_ops_dr_ENV.prom in metrics.dir, STATE_DIR/metrics)"),
    "restore_timeout": _int("seconds allowed for restore + recovery", 10, 7 * DAY),
    "fast_replay": Field(bool, "start the scratch copy with fsync, full_page_writes and synchronous_commit off"
                               " (default true; such a copy can never be cut over to)"),
    "amcheck": Section({
        "jobs": _int("pg_amcheck connections (default: the cores of this machine)", 1, 256),
        "timeout_seconds": _int("seconds pg_amcheck may take (default: the restore timeout)", 10, 7 * DAY),
        "quick": Section({"heap": Field(bool, "check every table's heap too (default false)"),
                          "heapallindexed": Field(bool, "every heap tuple must be in each index (default false)")}),
        "thorough": Section({"heap": Field(bool, "check every table's heap too (default true)"),
                             "heapallindexed": Field(bool, "every heap tuple must be in each index (default true)")}),
    }),
})

RDS = Section({
    "instance_id": Field(str, "the source DB instance identifier"),
    "instance_class": Field(str, "class of restored instances (default: the source's)"),
    "retention_days": _int("automated backup retention the policy requires", 1, 35),
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
    "port": _port(),
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
    "parallel": _int("default bound on concurrent SSH sessions", 1, 256),
})

PATCHING = Section({
    "upgrade_command": ListOf(Field(str), "argv of the package upgrade (default: apt-get, non-interactive)"),
    "pending_command": ListOf(Field(str), "argv that prints pending upgrades, one per line"),
    "reboot_command": ListOf(Field(str), "argv that reboots the host"),
    "upgrade_log": Field("remote_path",
                         "file on each host that keeps the upgrade's output, so the upgrade finishes even"
                         " if aep-ops goes away; {host} is the host's name"
                         " (default /var/tmp/aep-ops-upgrade-{host}.log)"),
    "min_healthy": _int("hosts that must stay in service (default: 2 in production, 1 elsewhere)", 0, 10000),
    "health_checks": _int("consecutive OK answers required", 1, 100),
    "health_timeout": _int("seconds to wait for health after the upgrade/reboot", 1, DAY),
    "reboot_timeout": _int("seconds to wait for SSH to come back after a reboot", 1, DAY),
    "drain_timeout": _int("seconds to wait for load-balancer draining", 0, DAY),
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
    "ssm": Section({"max_concurrency": Field(str), "max_errors": Field(str),
                    "timeout": _int("seconds a Run Command may take", 1, 2 * DAY),
                    "document": Field(str, "default AWS-RunShellScript")}),
    "endpoints": MapOf(Field(str), "name -> URL or host:port that `doctor` checks is reachable"),
})


def _add_area_fields() -> dict:
    """Areas whose configuration lives in their own schema module (kept small)."""
    from aep_ops.config import (schema_certs, schema_chatops, schema_incident, schema_logs, schema_metrics,
                                schema_migrate, schema_notify, schema_release, schema_service, schema_timers)

    for area in (schema_certs, schema_logs, schema_timers, schema_metrics, schema_chatops, schema_release,
                 schema_migrate, schema_notify, schema_service, schema_incident):
        ENVIRONMENT.fields.update(area.ENVIRONMENT_FIELDS)
    return {**schema_timers.TOP_FIELDS, **schema_metrics.TOP_FIELDS, **schema_chatops.TOP_FIELDS}


_TOP_AREA_FIELDS = _add_area_fields()


SCHEMA = Section({
    "state_dir": _path("journal, logs, locks, reports (default /var/lib/aep-ops as root)"),
    "default_env": Field(str, "environment used when --env is not given"),
    "plugins": ListOf(Field(str), "extra Python modules that register runbooks"),
    "runbook_dirs": ListOf(_path(), "extra directories with runbook Markdown files"),
    "log": Section({"level": Field(("debug", "info", "warning", "error"))}),
    "journal": Section({"dsn": Field("secret", "PostgreSQL journal and locks shared by several ops hosts")}),
    "vault": Section({"addr": _str(), "token": Field("secret")}),
    "environments": MapOf(ENVIRONMENT, keys=ENV_NAME, keys_help=ENV_NAME_HELP),
    **_TOP_AREA_FIELDS,
})


def check_layer(data: Any, source: str, schema: Any = SCHEMA, path: str = "") -> Any:
    """Validate one layer's raw data; return it with secret references parsed and paths expanded.

    Raises ConfigError naming the dotted key and ``source`` on an unknown key, a wrong type or
    a value out of range; a value is shown only as a short preview.
    """
    if isinstance(schema, Section):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: '{path or 'top level'}' must be a mapping, got {_typename(data)}")
        out = {}
        for key, value in data.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in schema.fields:
                known = ", ".join(sorted(schema.fields))
                raise ConfigError(f"{source}: unknown key {_key(sub)} (known here: {known})")
            out[key] = check_layer(value, source, schema.fields[key], sub)
        return out
    if isinstance(schema, MapOf):
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: '{path}' must be a mapping, got {_typename(data)}")
        for k in data:
            if schema.keys is not None and not (isinstance(k, str) and schema.keys.fullmatch(k)):
                raise ConfigError(f"{source}: '{path}' has the key {preview(k)}; {schema.keys_help}")
        return {str(k): check_layer(v, source, schema.value, f"{path}.{preview_text(str(k), 40)}")
                for k, v in data.items()}
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
            raise ConfigError(f"{source}: '{path}' is {preview(value)}; expected one of: {', '.join(spec.kind)}")
        return value
    if spec.kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{source}: '{path}' must be an integer, got {_typename(value)} {preview(value)}")
    if spec.kind is int:
        return _check_range(value, source, spec, path)
    if spec.kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{source}: '{path}' must be true or false, got {_typename(value)} {preview(value)}")
    if spec.kind == "scalar" and (isinstance(value, (dict, list)) or not isinstance(value, (str, int, float))):
        raise ConfigError(f"{source}: '{path}' must be a string, a number or true/false, got {_typename(value)}")
    if spec.kind in (str, "path", "remote_path") and not isinstance(value, str):
        raise ConfigError(f"{source}: '{path}' must be a string, got {_typename(value)} {preview(value)}")
    if spec.kind in ("path", "remote_path"):
        return check_path(value, source, path, local=spec.kind == "path")
    return value


def _check_range(value: int, source: str, spec: Field, path: str) -> int:
    low, high = spec.minimum, spec.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{source}: '{path}' is {preview(value)};"
                          f" expected a whole number {describe_range(low, high)}")
    return value


def describe_range(low: Any, high: Any) -> str:
    """``from 0 to 1000``, ``of at least 1``, ``of at most 5``: the words every range error uses."""
    if low is not None and high is not None:
        return f"from {show_number(low)} to {show_number(high)}"
    if low is not None:
        return f"of at least {show_number(low)}"
    return f"of at most {show_number(high)}" if high is not None else ""


def show_number(value: float) -> str:
    """1000 as 1000 and 0.5 as 0.5 (never 1e+07 for a whole number)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_path(value: str, source: str, path: str, *, local: bool = True) -> str:
    """A usable absolute path, or ConfigError naming the key: a relative path would put the
    journal, logs or keys wherever the command happened to be started. ``~`` and ``~user`` are
    expanded for a local path (a ``~nouser`` that does not expand is an error)."""
    hint = "give an absolute path, or leave it unset for the default"
    if not value.strip():
        raise ConfigError(f"{source}: '{path}' is empty; {hint}")
    if "\0" in value:
        raise ConfigError(f"{source}: '{path}' contains a NUL byte; {hint}")
    if len(value) > PATH_MAX:
        raise ConfigError(f"{source}: '{path}' is longer than {PATH_MAX} characters; {hint}")
    expanded = os.path.expanduser(value) if local and value.startswith("~") else value
    if local and expanded.startswith("~"):
        user = value[1:].split("/", 1)[0]
        raise ConfigError(f"{source}: '{path}' is {preview(value)}: no user {preview(user)} on this machine"
                          " to expand '~' for; give an absolute path")
    if not os.path.isabs(expanded):
        what = "absolute (or start with ~/)" if local else "absolute (start with /)"
        raise ConfigError(f"{source}: '{path}' is {preview(value)}; a path must be {what}")
    return expanded


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


def _key(dotted: str) -> str:
    return preview(dotted) if len(dotted) > PREVIEW_CHARS else f"'{dotted}'"


def _typename(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer",
            float: "a number", bool: "a boolean"}.get(type(value), type(value).__name__)


__all__ = ["Field", "Section", "MapOf", "ListOf", "SCHEMA", "ENV_NAME", "ENV_NAME_HELP", "check_layer", "check_path",
           "check_required",
           "describe_range", "preview", "preview_text", "schema_at", "show_number"]
