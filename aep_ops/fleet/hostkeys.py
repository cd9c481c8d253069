"""SSH host keys for ``fleet.trust``: which host and file, what a host offers
(``ssh-keyscan``), what known_hosts records for it (``ssh-keygen -F``), which offered keys
are new (a changed key is refused), and appending the new ones. The runbook's steps are in
runbooks.py."""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from aep_ops.base.errors import ConfigError, HostKeyError, HostUnreachable, UsageError


@dataclass(frozen=True)
class ScannedKey:
    """One host key offered by a host, as a known_hosts line and its SHA256 fingerprint."""

    entry: str
    key_type: str
    blob: str
    fingerprint: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ScannedKey":
        return cls(**data)


def trust_target(settings: Any, host: str, port: int = 0, known_hosts: str = "") -> tuple[str, int, str]:
    """(address, port, known_hosts file) for ``fleet.trust HOST``: HOST is an inventory name or
    ``[user@]address[:port]``; ``port`` (0: the host's) wins; the file is ``known_hosts`` or
    ``environments.ENV.ssh.known_hosts``."""
    from aep_ops.fleet.inventory import hosts_for
    from aep_ops.fleet.sshsetup import known_hosts_problem

    if not (host or "").strip():
        raise UsageError("no host given: `inv fleet.trust HOST` (an inventory name or [user@]address[:port])")
    target = hosts_for(settings, override=[host], flag="--host")[0]
    prefix = f"environments.{settings.env_name}.ssh.known_hosts"
    path = known_hosts or (settings.env.get("ssh") or {}).get("known_hosts")
    if not path:
        raise ConfigError(f"{prefix} is not set: nowhere to record the key; set it or pass --known-hosts FILE")
    path = os.path.expanduser(path)
    problem = known_hosts_problem(path, to_append=True)
    if problem:
        raise ConfigError(f"known_hosts file {path} ({'--known-hosts' if known_hosts else prefix}) {problem};"
                          " give the path of the known_hosts file to append to")
    return target.address, int(port) or target.port, path


def describe_offers(address: str, port: int, keys: list[ScannedKey]) -> str:
    """What a person checks before trusting: each offered key's type and fingerprint."""
    return "\n".join([f"{address}:{port} offers:", *(f"  {k.key_type:<22} {k.fingerprint}" for k in keys)])


def scan_host_keys(address: str, port: int = 22, *, timeout: int = 5) -> list[ScannedKey]:
    """``ssh-keyscan`` the host (no authentication, nothing trusted yet)."""
    import base64
    import binascii

    from aep_ops.executors.local import LocalExecutor
    from aep_ops.executors.ssh import fingerprint

    result = LocalExecutor().run(["ssh-keyscan", "-T", str(timeout), "-p", str(port), "--", address],
                                 timeout=timeout + 5)
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
    from aep_ops.executors.local import LocalExecutor

    if not os.path.isfile(known_hosts):
        return []
    name = address if port == 22 else f"[{address}]:{port}"
    # No "--" here: ssh-keygen takes no operands with -F (a trailing "--" is "Too many
    # arguments"), and NAME is -F's own argument, which getopt never reads as an option. The
    # guard is the host parser (aep_ops.fleet.inventory), which refuses anything beginning with "-".
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
                f"(`ssh-keygen -R {shlex.quote(entry)} -f {shlex.quote(known_hosts)}`) and trust again")
    return [k for k in scanned if (k.key_type, k.blob) not in have]


def append_known_hosts(known_hosts: str, keys: list[ScannedKey]) -> None:
    """Append entries with one write (created 0600 with its directory when missing)."""
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
