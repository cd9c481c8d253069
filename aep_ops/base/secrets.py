"""Secret references: ``env:NAME``, ``file:/path``, ``aws-sm:ARN-or-name[#json-key]``, ``vault:path#key``.

Configuration holds references, never values. A reference is resolved only when a step
uses it, cached for the rest of the process (one run), and registered with
``aep_ops.base.redact`` so the value is masked in every log line, record and error.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aep_ops.base import redact
from aep_ops.base.errors import ConfigError, SecretError

SCHEMES = ("env", "file", "aws-sm", "vault")


@dataclass(frozen=True)
class SecretRef:
    """A pointer to a secret. Its repr and str show the reference, never the value."""

    ref: str

    @property
    def scheme(self) -> str:
        return self.ref.split(":", 1)[0]

    @property
    def target(self) -> str:
        return self.ref.split(":", 1)[1]

    def __str__(self) -> str:
        return f"<secret {self.ref}>"

    __repr__ = __str__


def parse_ref(value: Any, *, where: str) -> SecretRef:
    """Accept only references; a literal secret in a config file is an error."""
    if isinstance(value, SecretRef):
        return value
    if not isinstance(value, str) or ":" not in value or value.split(":", 1)[0] not in SCHEMES:
        raise ConfigError(
            f"{where}: must be a secret reference (env:NAME, file:/path, aws-sm:NAME, vault:path#key),"
            " not a literal value"
        )
    if not value.split(":", 1)[1]:
        raise ConfigError(f"{where}: secret reference {value.split(':', 1)[0]}: names nothing")
    return SecretRef(value)


class SecretResolver:
    """Resolves references once per run and remembers the values for masking."""

    def __init__(self, *, vault_addr: str | None = None, vault_token: SecretRef | None = None,
                 aws_client: Callable[[str], Any] | None = None) -> None:
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self._vault_addr = vault_addr
        self._vault_token = vault_token
        self._aws_client = aws_client

    def resolve(self, ref: SecretRef | str) -> str:
        ref = ref if isinstance(ref, SecretRef) else parse_ref(ref, where="secret")
        with self._lock:
            if ref.ref in self._cache:
                return self._cache[ref.ref]
        value = _BACKENDS[ref.scheme](self, ref.target)
        unsafe = redact.unsafe_reason(value)
        if unsafe:  # it could be neither masked safely nor left visible in every log line
            raise SecretError(f"secret {ref.ref}: its value cannot be masked safely in logs and reports ({unsafe});"
                              " use a longer, random secret")
        redact.register(value)
        with self._lock:
            self._cache[ref.ref] = value
        return value

    # --- backends: each raises SecretError naming the reference, never a value ---

    def _env(self, name: str) -> str:
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"secret env:{name}: environment variable {name} is not set")
        return value

    def _file(self, path: str) -> str:
        try:
            return Path(path).read_text().rstrip("\n")
        except OSError as exc:
            raise SecretError(f"secret file:{path}: cannot read it ({exc.strerror})") from None

    def _aws_sm(self, target: str) -> str:
        secret_id, _, key = target.partition("#")
        if self._aws_client is None:
            raise SecretError(f"secret aws-sm:{secret_id}: no AWS client to read it with (resolve it through the"
                              " environment's settings)")
        client = self._aws_client("secretsmanager")
        try:
            raw = client.get_secret_value(SecretId=secret_id)["SecretString"]
        except Exception as exc:  # botocore ClientError and friends; message names no value
            raise SecretError(f"secret aws-sm:{secret_id}: {type(exc).__name__}: {redact.redact(str(exc))}") from None
        return _pick_key(raw, key, f"aws-sm:{secret_id}")

    def _vault(self, target: str) -> str:
        path, _, key = target.partition("#")
        if not key:
            raise SecretError(f"secret vault:{path}: name the key, e.g. vault:{path}#password")
        if not self._vault_addr or self._vault_token is None:
            raise SecretError(f"secret vault:{path}: set vault.addr and vault.token in the configuration")
        from aep_ops.base.vault import read_kv2

        token = self.resolve(self._vault_token)
        data = read_kv2(self._vault_addr, token, path)
        if key not in data:
            raise SecretError(f"secret vault:{path}: no key {key!r} (keys: {', '.join(sorted(data))})")
        return str(data[key])


def _pick_key(raw: str, key: str, where: str) -> str:
    if not key:
        return raw
    try:
        data = json.loads(raw)
    except ValueError:
        raise SecretError(f"secret {where}: is not JSON, cannot pick key {key!r}") from None
    if key not in data:
        raise SecretError(f"secret {where}: no key {key!r}")
    return str(data[key])


_BACKENDS: dict[str, Callable[[SecretResolver, str], str]] = {
    "env": SecretResolver._env,
    "file": SecretResolver._file,
    "aws-sm": SecretResolver._aws_sm,
    "vault": SecretResolver._vault,
}
