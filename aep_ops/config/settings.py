"""Layered configuration: defaults < repo aep-ops.yaml < /etc/aep-ops < ~/.config/aep-ops
< $AEP_OPS_CONFIG < AEP_OPS_* environment variables < command-line flags.

Why not invoke's Config: its merge forgets where a value came from, and an on-call
engineer needs "unknown key 'x' in /etc/aep-ops/aep-ops.yaml", not a traceback. This loader
keeps the source of every key, validates each layer against ``config.schema`` as it is
read, and checks required values after the merge.

Environment variables use ``__`` between levels, so keys may contain single underscores:
``AEP_OPS_ENVIRONMENTS__PROD__DATABASE__HOST=db.internal`` or ``AEP_OPS_STATE_DIR=/srv/aep``.
Flags: ``--env NAME`` and ``--set KEY=VALUE`` (repeatable, dotted keys).

Hostile input stays small: a file is at most 1 MiB of UTF-8, YAML aliases expand to at most
100,000 values (``parse_yaml``), every path is absolute, every number has a range, and an error
shows a value only as a short preview (``config.schema.preview``).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from aep_ops.config.schema import (ENV_NAME, ENV_NAME_HELP, ListOf, check_layer, check_required, preview,
                                   preview_text, schema_at)
from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.base.secrets import SecretRef, SecretResolver

ENV_PREFIX = "AEP_OPS_"
# Variables that steer the loader itself rather than naming a key.
# JOB: set by timers; APPROVED_RUN: set by chat-ops for the run that carries out an approved request
RESERVED_ENV = {"AEP_OPS_CONFIG", "AEP_OPS_ACTOR", "AEP_OPS_NO_SYSTEM_CONFIG", "AEP_OPS_JOB", "AEP_OPS_APPROVED_RUN"}
REPO_DIR = Path(__file__).resolve().parents[2]
MAX_CONFIG_BYTES = 1 << 20  # 1 MiB: far above any real configuration, far below a memory problem
MAX_YAML_NODES = 100_000  # values in one document once aliases are expanded (a 1,000-host inventory is ~15,000)

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
        files.append(Path(_xdg_home(os.environ, "XDG_CONFIG_HOME", ".config")) / "aep-ops" / "aep-ops.yaml")
    if "AEP_OPS_CONFIG" in os.environ:
        explicit = Path(os.environ["AEP_OPS_CONFIG"])
        if not os.environ["AEP_OPS_CONFIG"].strip():
            raise ConfigError("AEP_OPS_CONFIG is set but empty: name a configuration file, or unset it")
        if not explicit.is_file():
            raise ConfigError(f"AEP_OPS_CONFIG={preview(str(explicit))}: no such file")
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

    def overrides(self) -> dict[str, dict[str, Any]]:
        """Every value set for this run on the command line (``--set``) or by an ``AEP_OPS_*``
        variable, ``{key: {"value": ..., "source": ...}}``: what a run records, so that an auditor
        sees that it ran with changed settings. Secret references stay references; a value under
        a secret-looking name is masked even so (redact masks resolved values when written)."""
        out = {}
        for path, source in sorted(self.sources.items()):
            if not source.startswith(("--set ", "environment variable ")):
                continue
            value = _at(self.data, path.split("."))
            if isinstance(value, dict) and value:
                continue  # a section the override created on its way to its key
            out[path] = {"value": _mask_named(path, _mask(value)), "source": source}
        return out


def load(env: str | None = None, overrides: Iterable[str] = (), *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read every layer, validate, merge; ``env`` must name a configured environment."""
    environ = os.environ if environ is None else environ
    data = copy.deepcopy(DEFAULTS)
    sources: dict[str, str] = {}
    _merge(data, DEFAULTS, "built-in defaults", sources)
    for path in config_files():
        if path.is_file():
            _merge(data, check_layer(read_yaml_file(path), str(path)), str(path), sources)
    for layer, source in _env_layers(environ):
        _merge(data, check_layer(layer, source), source, sources)
    for item in overrides or ():  # the source names the key only: the value may be a secret
        layer, source = _flag_layer(item, _env_for_flags(env, data))
        _merge(data, check_layer(layer, source), source, sources)
    if data.get("state_dir") is None:
        data["state_dir"] = str(_default_state_dir(environ))
        sources["state_dir"] = "built-in default"
    check_required(data, sources)
    if env and not ENV_NAME.fullmatch(env):
        raise UsageError(f"--env {preview(env)}: {ENV_NAME_HELP}")
    env_name = env or data["default_env"]
    if env_name not in data["environments"]:
        known = ", ".join(sorted(data["environments"]))
        raise UsageError(f"unknown environment {preview(env_name)} (configured: {known})")
    return Settings(data=data, sources=sources, env_name=env_name)


def read_yaml_file(path: Path) -> dict:
    """A configuration file: at most MAX_CONFIG_BYTES of UTF-8, parsed by the bounded loader."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than the {MAX_CONFIG_BYTES // 1024 // 1024} MiB a configuration file"
                          " may have; is it the right file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start});"
                          " save it as UTF-8") from None
    loaded = parse_yaml(text, str(path))
    return {} if loaded is None else loaded


def parse_yaml(text: str, where: str, *, text_if_invalid: bool = False) -> Any:
    """YAML as data, with alias expansion and nesting bounded (a "billion laughs" document of a
    few hundred bytes would otherwise expand to gigabytes). Errors are one line naming ``where``;
    with ``text_if_invalid`` text that is not YAML is returned as it is (an env var, a --set value)."""
    import yaml

    try:
        return yaml.load(text, Loader=_bounded_loader())  # noqa: S506 - a SafeLoader subclass
    except _Refused as exc:
        raise ConfigError(f"{where}: refused: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: refused: nested too deeply to be a configuration") from None
    except (ValueError, OverflowError) as exc:  # a scalar YAML cannot convert: 5,000 digits, a date like 2026-13-45
        if text_if_invalid:
            return text
        raise ConfigError(f"{where}: a value cannot be read ({preview_text(str(exc).splitlines()[0])})") from None
    except yaml.YAMLError as exc:
        if text_if_invalid:
            return text
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        if isinstance(exc, yaml.reader.ReaderError):
            reason = f"character #x{exc.character:04x} at position {exc.position} is not allowed"
        else:
            reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(f"{where}:{at} is not valid YAML ({preview_text(reason)})") from None


class _Refused(Exception):
    """A document the bounded loader will not build (the message says why)."""


_LOADER: Any = None


def _bounded_loader() -> Any:
    global _LOADER
    if _LOADER is None:
        import yaml

        class BoundedSafeLoader(yaml.SafeLoader):
            """yaml.SafeLoader that measures each composed document before anything is built from it."""

            def compose_document(self) -> Any:
                node = super().compose_document()
                _check_expansion(node)
                return node

        _LOADER = BoundedSafeLoader
    return _LOADER


def _check_expansion(root: Any) -> None:
    """Count the values a document holds once every alias is expanded (each distinct node is
    visited once, so the count costs what the document costs), and refuse a self-reference."""
    import yaml

    def children(node: Any) -> list:
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return list(node.value) if isinstance(node, yaml.SequenceNode) else []

    expanded: dict[int, int] = {}
    entered: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, finished = stack.pop()
        if finished:
            entered.discard(id(node))
            expanded[id(node)] = 1 + sum(expanded[id(child)] for child in children(node))
            if expanded[id(node)] > MAX_YAML_NODES:
                raise _Refused(f"its YAML aliases expand to more than {MAX_YAML_NODES} values"
                               " (an alias bomb?); write the values out instead of nesting aliases")
            continue
        if id(node) in expanded:
            continue
        if id(node) in entered:
            raise _Refused("a YAML alias refers to the value that contains it")
        entered.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in children(node) if id(child) not in expanded)


def _env_layers(environ: Mapping[str, str]) -> Iterable[tuple[dict, str]]:
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        yield _one_key_layer(path, environ[name], f"environment variable {name}"), f"environment variable {name}"


def _env_for_flags(env: str | None, data: dict) -> str:
    """The environment an environment-relative ``--set drill.scale=2`` is about (checked later)."""
    name = env or data.get("default_env") or "local"
    return name if isinstance(name, str) and ENV_NAME.fullmatch(name) else "local"


def _flag_layer(item: str, env_name: str = "local") -> tuple[dict, str]:
    """``--set KEY=VALUE``; a KEY that starts with an environment's key (``drill.scale``, as the
    runbooks write it) means that key of the environment of this run: ``environments.ENV.drill.scale``."""
    from aep_ops.config.keys import environment_relative

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise UsageError(f"--set {preview(item)}: expected KEY=VALUE, e.g. --set log.level=debug")
    source = f"--set {preview_text(key)}"
    path = key.split(".")
    full = environment_relative(path, env_name) or path
    return _one_key_layer(full, value, source, env_name, typed=key), source


def _one_key_layer(path: list[str], raw: str, source: str, env_name: str = "local", typed: str | None = None) -> dict:
    """Turn ``a.b.c`` + text into ``{a: {b: {c: value}}}``, typed by the schema."""
    node = schema_at(path)
    if node is None:
        typed = ".".join(path) if typed is None else typed
        raise ConfigError(f"{source}: unknown key {preview(typed)}{_did_you_mean(typed, source, env_name)}")
    value: Any = raw
    kind = getattr(node, "kind", None)
    if kind in (int, bool, list) or kind is None:
        value = parse_yaml(raw, source, text_if_invalid=True)
    if isinstance(node, ListOf) and isinstance(value, str):
        value = [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(node, ListOf) and value is None and not raw.strip():
        value = []  # `--set plugins=`: no plugins
    layer: Any = value
    for part in reversed(path):
        layer = {part: layer}
    return layer


def _did_you_mean(typed: str, source: str, env_name: str) -> str:
    """``; did you mean drill.smoke_queries?`` (as a variable name for a variable), or nothing."""
    from aep_ops.config.keys import nearest_key

    variable = source.startswith("environment variable ")
    near = nearest_key(typed, env_name, relative=not variable)
    if near is None:
        return " (see `inv config.show`)"
    if variable:
        near = ENV_PREFIX + "__".join(part.upper() for part in near.split("."))
    return f"; did you mean {near}? (see `inv config.show`)"


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
    return Path(_xdg_home(environ, "XDG_STATE_HOME", ".local/state")) / "aep-ops"


def _xdg_home(environ: Mapping[str, str], name: str, fallback: str) -> str:
    """An XDG base directory; a relative or empty one is ignored, as the XDG spec says."""
    value = environ.get(name) or ""
    return value if os.path.isabs(value) and "\0" not in value else str(Path.home() / fallback)


_SECRET_NAMES = ("password", "passwd", "secret", "token", "key", "passphrase", "dsn", "credential", "cipher")


def _mask_named(path: str, value: Any) -> Any:
    last = path.rsplit(".", 1)[-1].lower()
    if value is None or str(value).startswith("<secret ") or not any(n in last for n in _SECRET_NAMES):
        return value
    return "****"


def _at(data: Any, parts: list[str]) -> Any:
    for part in parts:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _mask(obj: Any) -> Any:
    if isinstance(obj, SecretRef):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _mask(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mask(v) for v in obj]
    return obj
