"""Read one secret from HashiCorp Vault's KV v2 engine over plain HTTP(S).

One GET does not justify a client library; urllib keeps the CLI's imports small.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from aep_ops.base.errors import SecretError


def read_kv2(addr: str, token: str, path: str, *, timeout: float = 5.0) -> dict:
    """``path`` is ``mount/rest`` (e.g. ``secret/aep/db``); KV v2 reads ``/v1/mount/data/rest``."""
    mount, _, rest = path.partition("/")
    url = f"{addr.rstrip('/')}/v1/{mount}/data/{rest}"
    request = urllib.request.Request(url, headers={"X-Vault-Token": token})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise SecretError(f"secret vault:{path}: Vault answered HTTP {exc.code} at {addr}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SecretError(f"secret vault:{path}: cannot read from Vault at {addr} ({exc})") from None
    try:
        return body["data"]["data"]
    except (KeyError, TypeError):
        raise SecretError(f"secret vault:{path}: not a KV v2 secret") from None
