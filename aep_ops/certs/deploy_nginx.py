"""A certificate onto the nginx hosts of a role, one host at a time, each one verified over TLS.

Per host: ask the host itself (its address, the certificate's name as SNI) which serial it
serves; the wanted one already: nothing to do. Else keep what the host had
(``FILE.aep-ops-prev``, once), write the full chain and the key atomically, ``nginx -t``,
reload, and poll the host until it serves the new serial. Any failure puts the previous files
back, reloads, checks that the old serial is served again, and stops the rollout naming the
host and the reason: the hosts after it are left alone, the hosts before it keep the new
certificate (a rerun starts where this one stopped: done hosts are unchanged).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from aep_ops.certs.endpoints import DEFAULT_PORT, Endpoint, probe_name
from aep_ops.executors.files import backup_files, read_file, restore_files, run_checked, write_file
from aep_ops.base.errors import AepError, StepFailed
from aep_ops.base.log import get_logger

log = get_logger(__name__)

DEFAULT_DIR = "/etc/nginx/tls"
DEFAULT_TEST = ("nginx", "-t")
DEFAULT_RELOAD = ("nginx", "-s", "reload")
VERIFY_TIMEOUT = 30.0
POLL = 0.05
CONFIRMATIONS = 3


@dataclass(frozen=True)
class NginxTarget:
    """Where and how one certificate is served by nginx on a role's hosts."""

    certificate: str
    role: str
    port: int
    sni: str
    cert_path: str
    key_path: str
    test_command: tuple[str, ...]
    reload_command: tuple[str, ...]
    verify_timeout: float

    @classmethod
    def from_config(cls, cert: dict[str, Any]) -> "NginxTarget":
        nginx = cert.get("nginx") or {}
        name = cert["name"]
        return cls(certificate=name, role=nginx["role"], port=int(nginx.get("port") or DEFAULT_PORT),
                   sni=probe_name(cert) or "",
                   cert_path=nginx.get("cert_path") or f"{DEFAULT_DIR}/{name}.fullchain.pem",
                   key_path=nginx.get("key_path") or f"{DEFAULT_DIR}/{name}.key.pem",
                   test_command=tuple(nginx.get("test_command") or DEFAULT_TEST),
                   reload_command=tuple(nginx.get("reload_command") or DEFAULT_RELOAD),
                   verify_timeout=float(nginx.get("verify_timeout") or VERIFY_TIMEOUT))

    def endpoint(self, host: Any) -> Endpoint:
        return Endpoint(host.address, self.port, self.sni, certificate=self.certificate, host=host.name)

    def on(self, host: Any) -> "NginxTarget":
        """This target with ``{host}`` in its paths and commands replaced by the host's name (hosts
        that keep their files or their nginx prefix under a per-host path)."""
        def fill(text: str) -> str:
            return text.replace("{host}", host.name)

        return replace(self, cert_path=fill(self.cert_path), key_path=fill(self.key_path),
                       test_command=tuple(fill(a) for a in self.test_command),
                       reload_command=tuple(fill(a) for a in self.reload_command))


def serving(target: NginxTarget, host: Any) -> str | None:
    """The serial ``host`` serves now, or None when it cannot be asked (down, no TLS yet)."""
    from aep_ops.certs.probe import served_serial

    try:
        return served_serial(target.endpoint(host), timeout=10)
    except OSError:
        return None


def deploy_host(target: NginxTarget, host: Any, executor: Any, version: Any, *,
                say: Callable[[str], None]) -> str:
    """Put ``version`` on one host and prove it is served; returns "changed" or "unchanged"."""
    target = target.on(host)
    before = serving(target, host)
    if before == version.serial:
        return "unchanged"
    paths = [target.cert_path, target.key_path]
    if read_file(executor, target.cert_path) != version.fullchain_pem:  # not already written by a killed run
        backup_files(executor, paths)
    say(f"{host.name}: writing serial {version.serial} (serving {before or 'nothing'})")
    write_file(executor, target.cert_path, version.fullchain_pem, "0644")
    write_file(executor, target.key_path, version.key_pem, "0600")
    try:
        run_checked(executor, list(target.test_command), "nginx -t")
        run_checked(executor, list(target.reload_command), "reload")
        _wait_serving(target, host, version.serial)
    except AepError as exc:
        raise StepFailed(f"{host.name}: {exc}; {_roll_back(target, host, executor, before, say)}") from exc
    say(f"{host.name}: serves {version.serial}")
    return "changed"


def _wait_serving(target: NginxTarget, host: Any, serial: str) -> None:
    """Until ``CONFIRMATIONS`` fresh connections in a row get ``serial``: right after a reload the
    old workers still hold the listening socket for a moment, and one answer from a new worker
    proves nothing about the next connection."""
    deadline = time.monotonic() + target.verify_timeout
    in_a_row, seen = 0, None
    while in_a_row < CONFIRMATIONS:
        seen = serving(target, host)
        in_a_row = in_a_row + 1 if seen == serial else 0
        if in_a_row < CONFIRMATIONS:
            if time.monotonic() > deadline:
                raise StepFailed(f"still serves {seen or 'nothing'} {target.verify_timeout:g}s after the reload,"
                                 f" not {serial}")
            time.sleep(POLL)


def _roll_back(target: NginxTarget, host: Any, executor: Any, before: str | None, say: Callable[[str], None]) -> str:
    """Put the previous files back and reload; says what came of it (for the error message)."""
    say(f"{host.name}: rolling back to the previous files")
    try:
        restore_files(executor, [target.cert_path, target.key_path])
        run_checked(executor, list(target.test_command), "nginx -t of the previous files")
        run_checked(executor, list(target.reload_command), "reload")
        if before is not None:
            _wait_serving(target, host, before)
    except AepError as exc:
        log.error("certs.rollback_failed", host=host.name, error=str(exc))
        return f"ROLLBACK FAILED: {exc}; fix {host.name} by hand ({target.cert_path}.aep-ops-prev holds its old file)"
    return f"rolled back: {host.name} serves {before} again" if before else "rolled back the files"
