"""A fleet that serves a certificate: real sshd hosts, each with a real nginx of its own listening
with TLS on the host's own loopback address, its files under a per-host directory (the
configuration names them with ``{host}``), and the first host's nginx also answering http-01 on
plain HTTP where the CA (pebble) looks.

A host's reload can be held: while ``BASE/HOST/hold`` is a fifo, the configured reload command
blocks reading it (``hold_reload``/``release_reload``), so a test can kill a deploy at a proven
point of one host and resume it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aep_ops.testing.nginx import Nginx, Site, start_nginx, stop_nginx
from aep_ops.testing.ports import free_port
from tests.conftest import write_config

NAME = "api.aep.test"
HOLD = 'if [ -p "$1/hold" ]; then cat "$1/hold" > /dev/null; fi; shift; exec "$@"'


@dataclass
class CertHost:
    name: str
    ssh: Any  # aep_ops.testing.sshd.SshTestHost
    directory: Path
    nginx: Nginx

    @property
    def address(self) -> str:
        return self.ssh.address

    def cert_file(self) -> Path:
        return self.directory / "tls" / "api.fullchain.pem"

    def key_file(self) -> Path:
        return self.directory / "tls" / "api.key.pem"

    def challenge_files(self) -> list[Path]:
        found = self.directory / "webroot" / ".well-known" / "acme-challenge"
        return sorted(found.iterdir()) if found.is_dir() else []

    def hold_reload(self) -> Path:
        fifo = self.directory / "hold"
        os.mkfifo(fifo)
        return fifo

    def release_reload(self) -> None:
        """Remove the fifo, then unblock a reload waiting on it (opening it for writing and closing
        it gives the blocked reader its end of file)."""
        fifo = self.directory / "hold"
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: nobody is waiting; ENOENT: no hold
            fd = None
        fifo.unlink(missing_ok=True)
        if fd is not None:
            os.close(fd)


@dataclass
class CertFleet:
    base: Path
    hosts: list[CertHost]
    tls_port: int
    http_port: int | None

    def served(self) -> dict[str, str | None]:
        """The serial each host serves now, asked over TLS by its own address with the name as SNI."""
        return {h.name: self.served_by(h) for h in self.hosts}

    def served_by(self, host: CertHost) -> str | None:
        from aep_ops.certs.deploy_nginx import NginxTarget, serving

        target = NginxTarget(certificate="api", role="web", port=self.tls_port, sni=NAME, cert_path="",
                             key_path="", test_command=(), reload_command=(), verify_timeout=1)
        return serving(target, host)

    def stop(self) -> None:
        for host in self.hosts:
            stop_nginx(host.nginx)
        shutil.rmtree(self.base, ignore_errors=True)

    def config(self, env: str = "staging", *, production: bool = False, acme: str = "", extra: str = "",
               identity: Any = None, known_hosts: Any = None, certificate: str = "") -> str:
        """An environment serving certificate ``api`` on these hosts (role web)."""
        hosts = "".join(f"      - {{name: {h.name}, address: {h.address}, port: {h.ssh.port}, user: {h.ssh.user},"
                        f" role: web}}\n" for h in self.hosts)
        return (f"  {env}:\n    production: {'true' if production else 'false'}\n    backend: local\n"
                f"    ssh: {{identity: {identity}, known_hosts: {known_hosts}}}\n"
                f"    hosts:\n{hosts}"
                f"    certs: {{random_delay: 0}}\n{acme}"
                f"    certificates:\n{certificate or self.certificate()}{extra}")

    def certificate(self, *, validation: str = "http-01", key_type: str = "ecdsa-p256", verify_timeout: int = 10,
                    domains: tuple[str, ...] = (NAME, "www.aep.test"), zone_id: str | None = None) -> str:
        base = self.base
        prefix = f"{base}/{{host}}/nginx"
        nginx = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", prefix, "-c", f"{prefix}/nginx.conf",
                 "-e", f"{prefix}/error.log"]
        test = json.dumps([*nginx, "-t"])
        reload = json.dumps(["sh", "-c", HOLD, "sh", f"{base}/{{host}}", *nginx, "-s", "reload"])
        zone = f"        route53_zone_id: {zone_id}\n" if zone_id else ""
        return (f"      - name: api\n        domains: {json.dumps(list(domains))}\n        key_type: {key_type}\n"
                f"        validation: {validation}\n{zone}"
                f"        nginx:\n          role: web\n          port: {self.tls_port}\n"
                f"          webroot: '{base}/{{host}}/webroot'\n"
                f"          cert_path: '{base}/{{host}}/tls/api.fullchain.pem'\n"
                f"          key_path: '{base}/{{host}}/tls/api.key.pem'\n"
                f"          test_command: {test}\n"
                f"          reload_command: {reload}\n"
                f"          verify_timeout: {verify_timeout}\n")


def start_cert_fleet(count: int, ssh_host_factory: Any, first: Any, *, http_port: int | None = None) -> CertFleet:
    """``count`` hosts h01.., all serving ``first`` (tlscerts.LeafFiles) on one TLS port. Their files
    live under a 0755 directory in /tmp (nginx's workers run as nobody; pytest's tmp_path is 0700)."""
    base = Path(tempfile.mkdtemp(prefix="aep-cert-fleet-", dir="/tmp"))
    os.chmod(base, 0o755)
    tls_port = free_port()
    hosts: list[CertHost] = []
    try:
        for index in range(count):
            name = f"h{index + 1:02d}"
            directory = base / name
            (directory / "tls").mkdir(parents=True)
            (directory / "webroot").mkdir()
            shutil.copy(first.fullchain, directory / "tls" / "api.fullchain.pem")
            shutil.copy(first.key, directory / "tls" / "api.key.pem")
            ssh = ssh_host_factory()
            sites = [Site("tls", directory / "tls" / "api.fullchain.pem", directory / "tls" / "api.key.pem",
                          port=tls_port, address=ssh.address)]
            if index == 0 and http_port:
                sites.append(Site("http01", Path("-"), Path("-"), port=http_port, address="127.0.0.1", tls=False,
                                  webroot=directory / "webroot"))
            nginx = start_nginx(sites, base=directory / "nginx")
            hosts.append(CertHost(name, ssh, directory, nginx))
    except BaseException:
        for host in hosts:
            stop_nginx(host.nginx)
        shutil.rmtree(base, ignore_errors=True)
        raise
    return CertFleet(base, hosts, tls_port, http_port)


def write_fleet_config(tmp_path: Path, monkeypatch: Any, text: str) -> Path:
    return write_config(tmp_path / "aep-ops.yaml", "environments:\n" + text, monkeypatch)

