"""The local files an SSH connection reads, the identity and known_hosts, parsed once per
file version: a fan-out connects to many hosts with the same two files. ``load_identity`` is
also how the fleet checks an identity before any connection (aep_ops.fleet.sshsetup), so a
missing, unreadable or passphrase-protected key is the operator's configuration error, never
a host that looks unreachable. paramiko is imported inside functions."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from aep_ops.base.errors import ExecutionError


class _FileVersionCache:
    """What was parsed from a file, kept per process until the file changes (inode, mtime,
    size): a fan-out connects to many hosts with the same identity and known_hosts file."""

    def __init__(self) -> None:
        self._entries: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def get(self, path: str, load: Callable[[str], Any]) -> Any:
        """``load(path)`` once per file version; OSError from stat() or load propagates."""
        st = os.stat(path)
        version = (os.path.abspath(path), st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if version not in self._entries:
                value = load(path)
                for stale in [k for k in self._entries if k[0] == version[0]]:
                    del self._entries[stale]
                self._entries[version] = value
            return self._entries[version]


class UnusableIdentity(ExecutionError):
    """The identity file cannot be used as an SSH private key; ``reason`` says why, in words
    that never quote the file's content."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"SSH identity {path} {reason}")
        self.path, self.reason = path, reason


def load_identity(path: str) -> Any:
    """The private key at ``path``, parsed once per file version (UnusableIdentity if it is
    missing, a directory, not a private key paramiko can load, or passphrase-protected)."""
    import paramiko

    if not os.path.exists(path):
        raise UnusableIdentity(path, "does not exist")
    if os.path.isdir(path):
        raise UnusableIdentity(path, "is a directory, not a private key file")
    try:
        return _IDENTITIES.get(path, paramiko.PKey.from_path)
    except (paramiko.PasswordRequiredException, TypeError):  # cryptography: TypeError, no password
        raise UnusableIdentity(path, "is passphrase-protected; aep-ops needs a key without a passphrase (load it"
                                     " from a secret store onto disk for the run)") from None
    except OSError as exc:
        raise UnusableIdentity(path, f"cannot be read ({exc.strerror or exc})") from None
    except (paramiko.SSHException, ValueError):
        raise UnusableIdentity(path, _not_a_key(path)) from None


def _not_a_key(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        head = b""
    if head.startswith((b"ssh-", b"ecdsa-", b"sk-")):
        return "is a public key; give the private key (usually the same path without .pub)"
    return "is not a private key aep-ops can load (an OpenSSH or PEM private key is expected)"


def _parse_known_hosts(path: str) -> tuple[dict[str, list[Any]], list[Any]]:
    """(plain host name -> entries, entries with hashed names); unreadable lines are skipped, never trusted."""
    from paramiko.hostkeys import HostKeyEntry, InvalidHostKey
    from paramiko.ssh_exception import SSHException

    plain: dict[str, list[Any]] = {}
    hashed: list[Any] = []
    with open(path) as f:
        for lineno, line in enumerate(map(str.strip, f), 1):
            try:
                entry = None if not line or line[0] == "#" else HostKeyEntry.from_line(line, lineno)
            except (SSHException, InvalidHostKey, ValueError):
                entry = None
            for h in entry.hostnames if entry else ():
                if h.startswith("|1|"):
                    hashed.append(entry)
                else:
                    plain.setdefault(h, []).append(entry)
    return plain, hashed


# Given a key_filename, paramiko parses the identity for every connection, trying each key
# class in turn (an ed25519 key is read three times; an RSA key is validated by OpenSSL
# each time). paramiko's load_host_keys re-reads the whole known_hosts for every connection
# and de-duplicates with a linear scan per line: O(n^2) per host, about 60% of the client
# CPU of a 50-host fan-out. Both are parsed once per file version instead.
_IDENTITIES = _FileVersionCache()
_KNOWN_HOSTS = _FileVersionCache()


def known_hosts_entries(path: str) -> tuple[dict[str, list[Any]], list[Any]]:
    """known_hosts parsed (see _parse_known_hosts), once per file version; OSError if unreadable."""
    return _KNOWN_HOSTS.get(path, _parse_known_hosts)
