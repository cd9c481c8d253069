"""The ``logs:`` values of an environment with their defaults in one place (the schema is
aep_ops/config/schema_logs.py), and each configured log source resolved from its kind.

A kind gives the defaults an on-call engineer would pick for that program: the Node API reopens
its file on USR2 (pino), nginx on USR1, PostgreSQL's ``pg_ctl -l`` log cannot be reopened
(copytruncate, with its loss window reported), and aep-ops's own log and audit log live on the
machine aep-ops runs on (role ``local``)."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from typing import Any

from aep_ops.base.errors import ConfigError, UsageError

LOCAL_ROLE = "local"
DEFAULTS = {"sse": "AES256", "audit_retention_days": 365, "noncurrent_days": 7, "local_retention_days": 7,
            "concurrency": 4, "multipart_threshold_mb": 64, "part_size_mb": 16, "reopen_timeout": 10,
            "config_path": "/etc/aep-ops/logrotate-{env}.conf",
            "state_file": "/var/lib/aep-ops/logrotate-{env}.status"}
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "node-api": {"method": "create", "signal": "USR2"},
    "nginx": {"method": "create", "signal": "USR1", "pidfile": "/run/nginx.pid"},
    "postgresql": {"method": "copytruncate"},
    "aep-ops": {"method": "create", "role": LOCAL_ROLE, "paths": ["{state_dir}/logs/aep-ops.jsonl"]},
    "audit": {"method": "create", "role": LOCAL_ROLE, "class": "audit", "paths": ["{state_dir}/logs/audit.jsonl"]},
    "plain": {"method": "create"},
}
# aep-ops holds its log open for a run and appends to the audit log per record: a line can still
# land in the just-rotated file, so it is compressed one rotation later (delaycompress).
DELAY_COMPRESS = ("aep-ops", "audit")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
SIZE = re.compile(r"[1-9][0-9]{0,9}[kMG]?")
MODE = re.compile(r"0?[0-7]{3}")
OWNER = re.compile(r"[a-z_][a-z0-9_-]{0,31} [a-z_][a-z0-9_-]{0,31}")
# A path goes into the logrotate file inside double quotes: none of these may break out of it.
UNSAFE_PATH = re.compile(r'["\\\n\r{}\x00]')


@dataclass(frozen=True)
class Source:
    """One configured log source, its kind's defaults applied."""

    name: str
    kind: str
    role: str
    paths: tuple[str, ...]
    klass: str = "app"
    schedule: str | None = None  # None: daily, or by size alone when a size is set
    size: str | None = None
    keep: int = 168
    compress: bool = True
    method: str = "create"
    signal: str | None = None
    pidfile: str | None = None
    reopen_command: tuple[str, ...] = ()
    create_mode: str = "0640"
    su: str | None = None

    @property
    def local(self) -> bool:
        return self.role == LOCAL_ROLE

    @property
    def delay_compress(self) -> bool:
        return self.kind in DELAY_COMPRESS

    @property
    def key_role(self) -> str:
        """The role in an S3 key: aep-ops's own files are the ``aep-ops`` role's."""
        return "aep-ops" if self.local else self.role

    def paths_on(self, host_name: str) -> list[str]:
        return [p.replace("{host}", host_name) for p in self.paths]


def logs_settings(settings: Any) -> dict[str, Any]:
    values = {**DEFAULTS, **{k: v for k, v in (settings.env.get("logs") or {}).items() if v is not None}}
    values.setdefault("retention_days", 90 if settings.production else 30)
    for key in ("config_path", "state_file"):
        values[key] = values[key].replace("{env}", settings.env_name)
    if values["sse"] == "aws:kms" and not values.get("kms_key_id"):
        raise ConfigError(f"environments.{settings.env_name}.logs.sse is aws:kms but kms_key_id is not set;"
                          " name the KMS key, or use sse: AES256")
    return values


def object_lock(values: dict[str, Any]) -> dict[str, Any] | None:
    """How shipped audit objects are locked (None: they are not): GOVERNANCE unless configured,
    for as long as they are kept unless configured."""
    lock = values.get("audit_object_lock")
    if not lock:
        return None
    return {"mode": lock.get("mode") or "GOVERNANCE", "days": int(lock.get("days") or values["audit_retention_days"])}


def sources(settings: Any, role: str | None = None) -> list[Source]:
    """The environment's log sources (default: aep-ops's own log and audit log), only ``role``'s
    when given. A role that no source has is a mistake, never "nothing to do"."""
    configured = (settings.env.get("logs") or {}).get("sources")
    raw = configured if configured else [{"name": "aep-ops", "kind": "aep-ops"}, {"name": "audit", "kind": "audit"}]
    found = [_source(settings, entry, number) for number, entry in enumerate(raw)]
    names = [s.name for s in found]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"environments.{settings.env_name}.logs.sources: the name {name!r} is used twice")
    if role is None:
        return found
    chosen = [s for s in found if s.role == role]
    if not chosen:
        roles = ", ".join(sorted({s.role for s in found}))
        raise UsageError(f"--role {role}: no log source of environment {settings.env_name} has that role"
                         f" (roles with log sources: {roles})")
    return chosen


def bucket(settings: Any, flag: str | None = None) -> str:
    from aep_ops.base.errors import refuse_blank

    refuse_blank("--bucket", flag, "name the S3 bucket, or leave the flag out to use logs.bucket")
    name = flag or logs_settings(settings).get("bucket")
    if not name:
        raise ConfigError(f"environments.{settings.env_name}.logs.bucket is not set: name the S3 bucket the logs"
                          " go to (or pass --bucket)")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", name):
        raise UsageError(f"bucket {name!r} is not a valid S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
    return name


def _source(settings: Any, entry: dict[str, Any], number: int) -> Source:
    where = f"environments.{settings.env_name}.logs.sources[{number}]"
    kind = entry["kind"]
    values = {**KIND_DEFAULTS[kind], **{k: v for k, v in entry.items() if v is not None}}
    name = values["name"]
    if not NAME.fullmatch(name):
        raise ConfigError(f"{where}.name {name!r}: letters, digits, '-' and '_' only (it names files)")
    role = values.get("role")
    if not role:
        raise ConfigError(f"{where} ({name}): role is not set: name the host role whose hosts hold the files")
    paths = [p.replace("{state_dir}", str(settings.state_dir)) for p in values.get("paths") or []]
    if not paths:
        raise ConfigError(f"{where} ({name}): paths is empty: name the log files (globs allowed)")
    for path in paths:
        if UNSAFE_PATH.search(path.replace("{host}", "")):
            raise ConfigError(f"{where}.paths: {path!r} holds a quote, backslash, brace or line break")
    _check_formats(where, values)
    method = values["method"]
    sig = _signal(where, values.get("signal")) if method == "create" else None
    reopen = tuple(values.get("reopen_command") or ())
    if kind == "node-api" and method == "create" and not (values.get("pidfile") or reopen):
        raise ConfigError(f"{where} ({name}): a node-api source needs pidfile (the process to send"
                          f" {sig} to) or reopen_command; without one the API keeps writing to the rotated file")
    return Source(name=name, kind=kind, role=role, paths=tuple(paths), klass=values.get("class", "app"),
                  schedule=values.get("schedule"), size=values.get("size"), keep=int(values.get("keep", 168)),
                  compress=bool(values.get("compress", True)), method=method, signal=sig,
                  pidfile=values.get("pidfile") if sig and not reopen else None, reopen_command=reopen,
                  create_mode=values.get("create_mode", "0640"), su=values.get("su"))


def _check_formats(where: str, values: dict[str, Any]) -> None:
    if values.get("size") is not None and not SIZE.fullmatch(str(values["size"])):
        raise ConfigError(f"{where}.size {values['size']!r}: a size like 100M, 500k or 1G")
    if not MODE.fullmatch(str(values.get("create_mode", "0640"))):
        raise ConfigError(f"{where}.create_mode {values['create_mode']!r}: an octal mode like 0640")
    if values.get("su") is not None and not OWNER.fullmatch(values["su"]):
        raise ConfigError(f"{where}.su {values['su']!r}: `USER GROUP`, e.g. `root adm`")


def _signal(where: str, name: str | None) -> str | None:
    if name is None:
        return None
    bare = str(name).upper().removeprefix("SIG")
    if not hasattr(signal, f"SIG{bare}") or not bare.isalnum():
        raise ConfigError(f"{where}.signal {name!r} is not a signal name (e.g. USR2, USR1, HUP)")
    return bare
