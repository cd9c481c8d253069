"""Real nginx serving TLS on loopback for certificate tests: one ``server`` per site, each on its
own port, with its own certificate, protocols and ciphers (a site that accepts TLS 1.0 needs
``DEFAULT@SECLEVEL=0``: OpenSSL 3 refuses 1.0 and 1024-bit keys at its default level).

nginx runs unprivileged under its own prefix (``nginx -p DIR -c DIR/nginx.conf``), in the
foreground as a child of the test; ``reload()`` sends SIGHUP after ``nginx -t``. Missing nginx
is an error naming the package, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aep_ops.base.processes import alive, stat_fields, stop_child
from aep_ops.testing.ports import free_port

MODERN = "TLSv1.2 TLSv1.3"


@dataclass
class Site:
    """One TLS server block. ``port`` 0: one from the test allocator at start."""

    name: str
    cert: Path
    key: Path
    protocols: str = MODERN
    ciphers: str | None = None
    webroot: Path | None = None
    port: int = 0
    address: str = "127.0.0.1"
    tls: bool = True  # False: plain HTTP (an http-01 front serving ``webroot``)


@dataclass
class Nginx:
    base: Path
    sites: dict[str, Site] = field(default_factory=dict)
    http_extra: str = ""  # http-level blocks a caller renders itself (alb_nginx.py: an upstream and its proxy)
    listens: list[tuple[str, int]] = field(default_factory=list)  # what http_extra listens on: waited for
    _process: Any = field(default=None, repr=False)

    @property
    def conf(self) -> Path:
        return self.base / "nginx.conf"

    def port(self, name: str) -> int:
        return self.sites[name].port

    def error_log(self) -> str:
        path = self.base / "error.log"
        return path.read_text() if path.exists() else ""

    def argv(self) -> list[str]:
        return [_nginx_bin(), "-p", str(self.base), "-c", str(self.conf), "-e", str(self.base / "error.log")]

    def write_conf(self) -> None:
        user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
        blocks = "".join(_server_block(s) for s in self.sites.values()) + self.http_extra
        self.conf.write_text(
            f"daemon off;\nmaster_process on;\nworker_processes 1;\n{user}pid {self.base}/nginx.pid;\n"
            f"error_log {self.base}/error.log notice;\nevents {{ worker_connections 512; }}\n"
            f"http {{\n    access_log off;\n    client_body_temp_path {self.base}/tmp/body;\n"
            f"    proxy_temp_path {self.base}/tmp/proxy;\n    fastcgi_temp_path {self.base}/tmp/fastcgi;\n"
            f"    uwsgi_temp_path {self.base}/tmp/uwsgi;\n    scgi_temp_path {self.base}/tmp/scgi;\n{blocks}}}\n")

    def test_conf(self) -> subprocess.CompletedProcess:
        return subprocess.run([*self.argv(), "-t"], capture_output=True, text=True, timeout=30)

    def start(self, timeout: float = 10) -> "Nginx":
        for site in self.sites.values():
            site.port = site.port or free_port()
        self.write_conf()
        check = self.test_conf()
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed for {self.conf}: {check.stderr.strip()}")
        with open(self.base / "stderr.log", "wb") as stderr:  # a file: nobody reads a pipe until exit
            self._process = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            self._wait_listening(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def reload(self) -> None:
        """SIGHUP after ``nginx -t``; returns once only the new configuration accepts connections:
        the master starts new workers and only then tells the old ones to stop accepting (they
        finish their requests), so until each old worker logs that it is shutting down, a new
        connection may still be served with the old configuration."""
        check = self.test_conf()
        if check.returncode != 0:
            raise RuntimeError(f"nginx -t failed: {check.stderr.strip()}")
        marker = len(self.error_log())
        old_workers = self.workers()
        self._process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not self._reloaded(marker, old_workers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not reload: {self.error_log()[marker:]}")
            time.sleep(0.01)

    def workers(self) -> list[int]:
        """PIDs of the master's live children (its worker processes, old and new)."""
        if self._process is None:
            return []
        master = str(self._process.pid)
        return [pid for pid in _all_pids() if (fields := stat_fields(pid)) and fields[1] == master
                and fields[0] != "Z"]

    def _reloaded(self, marker: int, old_workers: list[int]) -> bool:
        log = self.error_log()
        if "start worker process" not in log[marker:]:  # new workers, new configuration
            return False
        # "PID#TID: gracefully shutting down" is logged right before the worker closes its listening
        # sockets (the whole log: a worker of an earlier reload may still be finishing its requests)
        return all(f"{pid}#{pid}: gracefully shutting down" in log or not alive(pid) for pid in old_workers)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_child(process)

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [(s.address, s.port) for s in self.sites.values()] + list(self.listens)
        while pending:
            if self._process.poll() is not None:
                raise RuntimeError(f"nginx exited with {self._process.returncode}: {self.error_log().strip()}")
            address, port = pending[0]
            try:
                socket.create_connection((address, port), timeout=1).close()
                pending.pop(0)
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not listen on {address}:{port} within {timeout:g}s:"
                                       f" {self.error_log().strip()}") from None
                time.sleep(0.02)


def start_nginx(sites: list[Site], base: Path | None = None, http_extra: str = "",
                listens: list[tuple[str, int]] | None = None) -> Nginx:
    """nginx under the prefix ``base`` (default: a new directory in /tmp) serving ``sites`` (ports
    filled in when 0) and ``http_extra`` (which listens on ``listens``); its configuration is
    ``base/nginx.conf``, its pid file ``base/nginx.pid``."""
    _nginx_bin()
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="aep-nginx-", dir="/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    (base / "tmp").mkdir()
    server = Nginx(base, {s.name: s for s in sites}, http_extra, list(listens or []))
    try:
        return server.start()
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def stop_nginx(server: Nginx) -> None:
    server.stop()
    shutil.rmtree(server.base, ignore_errors=True)


def _server_block(site: Site) -> str:
    if not site.tls:
        return (f"    server {{\n        listen {site.address}:{site.port};\n        server_name _;\n"
                f"        location /.well-known/acme-challenge/ {{ root {site.webroot}; }}\n    }}\n")
    ciphers = f"        ssl_ciphers {site.ciphers};\n" if site.ciphers else ""
    webroot = (f"        location /.well-known/acme-challenge/ {{ root {site.webroot}; }}\n"
               if site.webroot else "")
    return (f"    server {{\n        listen {site.address}:{site.port} ssl;\n        server_name _;\n"
            f"        ssl_certificate {site.cert};\n        ssl_certificate_key {site.key};\n"
            f"        ssl_protocols {site.protocols};\n{ciphers}{webroot}"
            f"        location / {{ return 200 \"{site.name}\\n\"; }}\n    }}\n")


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in os.scandir("/proc") if entry.name.isdigit()]


def _nginx_bin() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed: apt-get install nginx-light (or `make test`)")
    return found
