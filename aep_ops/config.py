"""Layered configuration: defaults < repo aep-ops.yaml < /etc/aep-ops < ~/.config/aep-ops
< $AEP_OPS_CONFIG < AEP_OPS_* environment variables < command-line flags.

Why not invoke's Config: its merge forgets where a value came from, and an on-call
engineer needs "unknown key 'x' in /etc/aep-ops/aep-ops.yaml", not a traceback. This loader
keeps the source of every key, validates each layer against ``config_schema`` as it is
read, and checks required values after the merge.

Environment variables use ``__`` between levels, so keys may contain single underscores:
``AEP_OPS_ENVIRONMENTS__PROD__DATABASE__HOST=db.internal`` or ``AEP_OPS_STATE_DIR=/srv/aep``.
Flags: ``--env NAME`` and ``--set KEY=VALUE`` (repeatable, dotted keys).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from aep_ops.config_schema import ListOf, check_layer, check_required, schema_at
from aep_ops.errors import ConfigError, UsageError
from aep_ops.secrets import SecretRef, SecretResolver

ENV_PREFIX = "AEP_OPS_"
# Variables that steer the loader itself rather than naming a key.
RESERVED_ENV = {"AEP_OPS_CONFIG", "AEP_OPS_ACTOR", "AEP_OPS_NO_SYSTEM_CONFIG"}
REPO_DIR = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, Any] = {
    "state_dir": None,
    "default_env": "local",
    "plugins": [],
    "runbook_dirs": [],
    "log": {"level": "info"},
    "journal": {"dsn": None},
    "vault": {"addr": None, "token": None},
    "environments": {
        "local": {"description": "everything on this machine (the embedded default)",
                  "production": False, "backend": "local",
                  "objectives": {"rto_seconds": 4 * 3600, "rpo_seconds": 15 * 60}},
        "dev": {"description": "development", "production": False, "backend": "local"},
        "staging": {"description": "staging on AWS", "production": False, "backend": "rds"},
        "prod": {"description": "production on AWS", "production": True, "backend": "rds"},
    },
}


def config_files() -> list[Path]:
    """Files read, lowest precedence first (missing ones are skipped)."""
    files = [REPO_DIR / "aep-ops.yaml"]
    if not os.environ.get("AEP_OPS_NO_SYSTEM_CONFIG"):
        files.append(Path("/etc/aep-ops/aep-ops.yaml"))
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        files.append(Path(xdg) / "aep-ops" / "aep-ops.yaml")
    if os.environ.get("AEP_OPS_CONFIG"):
        explicit = Path(os.environ["AEP_OPS_CONFIG"])
        if not explicit.is_file():
            raise ConfigError(f"AEP_OPS_CONFIG={explicit}: no such file")
        files.append(explicit)
    return files


@dataclass
class Settings:
    """The effective configuration for one run, with the source of each value."""

    data: dict[str, Any]
    sources: dict[str, str]
    env_name: str
    resolver: SecretResolver = field(repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.resolver is None:
            vault = self.data.get("vault") or {}
            self.resolver = SecretResolver(vault_addr=vault.get("addr"), vault_token=vault.get("token"),
                                           aws_client=self._aws_client)

    def _aws_client(self, service: str) -> Any:
        """The one AWS client factory, for ``aws-sm:`` references (imported only when one is resolved)."""
        from aep_ops.aws.clients import client

        return client(self, service)

    @property
    def env(self) -> dict[str, Any]:
        return self.data["environments"][self.env_name]

    @property
    def production(self) -> bool:
        return bool(self.env.get("production"))

    @property
    def state_dir(self) -> Path:
        return Path(self.data["state_dir"]).expanduser()

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or node.get(part) is None:
                return default
            node = node[part]
        return node

    def secret(self, ref: SecretRef | str) -> str:
        """Resolve a secret at the moment of use; the value is masked everywhere from now on."""
        return self.resolver.resolve(ref)

    def masked(self) -> dict[str, Any]:
        """The configuration as plain data with secret references shown, never resolved."""
        return _mask(self.data)


def load(env: str | None = None, overrides: Iterable[str] = (), *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read every layer, validate, merge; ``env`` must name a configured environment."""
    environ = os.environ if environ is None else environ
    data = copy.deepcopy(DEFAULTS)
    sources: dict[str, str] = {}
    _merge(data, DEFAULTS, "built-in defaults", sources)
    for path in config_files():
        if path.is_file():
            _merge(data, check_layer(_read_yaml(path), str(path)), str(path), sources)
    for layer, source in _env_layers(environ):
        _merge(data, check_layer(layer, source), source, sources)
    for item in overrides or ():
        layer = _flag_layer(item)
        _merge(data, check_layer(layer, f"--set {item}"), f"--set {item.split('=', 1)[0]}", sources)
    if data.get("state_dir") is None:
        data["state_dir"] = str(_default_state_dir(environ))
        sources["state_dir"] = "built-in default"
    check_required(data, sources)
    env_name = env or data["default_env"]
    if env_name not in data["environments"]:
        known = ", ".join(sorted(data["environments"]))
        raise UsageError(f"unknown environment '{env_name}' (configured: {known})")
    return Settings(data=data, sources=sources, env_name=env_name)


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return {} if loaded is None else loaded


def _env_layers(environ: Mapping[str, str]) -> Iterable[tuple[dict, str]]:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        yield _one_key_layer(path, environ[name], f"environment variable {name}"), f"environment variable {name}"


def _flag_layer(item: str) -> dict:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. --set log.level=debug")
    return _one_key_layer(key.split("."), value, f"--set {key}")


def _one_key_layer(path: list[str], raw: str, source: str) -> dict:
    """Turn ``a.b.c`` + text into ``{a: {b: {c: value}}}``, typed by the schema."""
    node = schema_at(path)
    if node is None:
        raise ConfigError(f"{source}: unknown key '{'.'.join(path)}'")
    value: Any = raw
    kind = getattr(node, "kind", None)
    if kind in (int, bool, list) or kind is None:
        import yaml

        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
    if isinstance(node, ListOf) and isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    layer: Any = value
    for part in reversed(path):
        layer = {part: layer}
    return layer


def _merge(into: dict, layer: dict, source: str, sources: dict[str, str], prefix: str = "") -> None:
    for key, value in layer.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            sources.setdefault(path, source)
            _merge(into[key], value, source, sources, path)
        else:
            into[key] = copy.deepcopy(value)
            sources[path] = source
            if isinstance(value, dict):
                _record_sources(value, source, sources, path)


def _record_sources(value: dict, source: str, sources: dict[str, str], prefix: str) -> None:
    for key, sub in value.items():
        path = f"{prefix}.{key}"
        sources[path] = source
        if isinstance(sub, dict):
            _record_sources(sub, source, sources, path)


def _default_state_dir(environ: Mapping[str, str]) -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/aep-ops")
    xdg = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "aep-ops"


def _mask(obj: Any) -> Any:
    if isinstance(obj, SecretRef):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _mask(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask(v) for v in obj]
    return obj
