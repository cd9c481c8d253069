"""The two local files every SSH connection of a fan-out needs, the identity and known_hosts,
checked once before any host is contacted.

A key that is missing, a directory, not a private key, or passphrase-protected, and a
known_hosts path that is a directory, are the operator's configuration: reported per host they
look like a fleet that is down ("unreachable" 50 times). Here they are one ConfigError (exit 2)
naming the path, where it came from (flag or configuration key) and what is wrong. The key is
parsed through the executor's cache, so the connections that follow do not parse it again.
"""

from __future__ import annotations

import os
from typing import Any

from aep_ops.base.errors import ConfigError, refuse_blank

KNOWN_HOSTS_BLANK = "name the file, or leave the flag out for ssh.known_hosts"


def ssh_file_flags(identity: str | None, known_hosts: str | None) -> None:
    """``--identity ""`` / ``--known-hosts ""`` (an unset variable) is a mistake, never "the
    configured file": exit 2 before anything else (fleet.run, fleet.facts, patch.rolling)."""
    refuse_blank("--identity", identity, "name the key file, or leave the flag out for ssh.identity")
    refuse_blank("--known-hosts", known_hosts, KNOWN_HOSTS_BLANK)


def ssh_files(settings: Any, *, identity: str | None = None, known_hosts: str | None = None,
              host: Any = None) -> tuple[str, str]:
    """(identity, known_hosts) to connect with: the flags, else ``environments.ENV.ssh``; both
    usable, or ConfigError. ``host`` (optional) only makes the fleet.trust hint concrete."""
    from aep_ops.executors.sshfiles import UnusableIdentity, load_identity

    ssh = settings.env.get("ssh") or {}
    prefix = f"environments.{settings.env_name}.ssh"
    trust = f"`inv fleet.trust {host.address} --port {host.port}`" if host is not None else "`inv fleet.trust HOST`"
    known = _path(known_hosts or ssh.get("known_hosts"))
    if not known:
        raise ConfigError(f"{prefix}.known_hosts is not set: aep-ops checks every SSH host key and has nothing to "
                          f"check {host.address if host is not None else 'the hosts'} against; set it (or pass "
                          f"--known-hosts FILE) and record keys with {trust}")
    source = "--known-hosts" if known_hosts else f"{prefix}.known_hosts"
    problem = known_hosts_problem(known)
    if problem:
        fix = f"record host keys with {trust}" if problem == "does not exist" else "give the known_hosts file itself"
        raise ConfigError(f"known_hosts file {known} ({source}) {problem}; {fix}")
    key = _path(identity or ssh.get("identity"))
    if not key:
        raise ConfigError(f"{prefix}.identity is not set: no SSH key to log in to "
                          f"{host.address if host is not None else 'the hosts'} with; set it to a private key path"
                          " or pass --identity FILE")
    try:
        load_identity(key)
    except UnusableIdentity as exc:
        raise ConfigError(f"SSH identity {key} ({'--identity' if identity else prefix + '.identity'}) {exc.reason}"
                          + ("" if os.path.isfile(key) else "; give the path of a private key file")) from None
    return key, known


def known_hosts_problem(path: str, *, to_append: bool = False) -> str | None:
    """What makes ``path`` unusable as a known_hosts file (None: usable). ``to_append``
    (fleet.trust): it may be missing, if it can be created there."""
    if not os.path.lexists(path):
        if not to_append:
            return "does not exist"
        parent = _nearest_existing(os.path.dirname(os.path.abspath(path)))
        return None if os.path.isdir(parent) else f"cannot be created: {parent} is not a directory"
    if os.path.isdir(path):
        return "is a directory, not a known_hosts file"
    if not os.path.isfile(path):
        return "is not a regular file" if os.path.exists(path) else "is a dangling symbolic link"
    if not os.access(path, os.R_OK | (os.W_OK if to_append else 0)):
        return "cannot be written" if to_append and os.access(path, os.R_OK) else "cannot be read"
    return None


def _nearest_existing(path: str) -> str:
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def _path(value: str | None) -> str | None:
    return os.path.expanduser(value) if value else None
