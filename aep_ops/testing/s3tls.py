"""An HTTPS front for the moto server, for clients that need real TLS (pgBackRest's S3 repo).

FIELD-NOTES: moto's own ``--ssl-cert`` dev server breaks pgBackRest ("unexpected eof while
reading"); nginx terminating TLS in front of plain-HTTP moto works. So: a self-signed
certificate made with openssl (SAN IP:127.0.0.1 and DNS:localhost; it is also the CA that
clients trust), nginx under its own prefix (``nginx -p DIR -c DIR/nginx.conf -e DIR/error.log``,
pid and temp paths inside DIR), streaming request bodies straight through to moto.
pgBackRest 2.45 matches only the certificate's DNS names, not its IP address: point it at
``server_name`` (localhost), not at 127.0.0.1.

The directory is 0755 and the certificate 0644 so that the postgres user (pgBackRest) can
read the CA file. Missing nginx or openssl is an error naming the package, never a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest

from aep_ops.base.processes import stop_child
from aep_ops.testing.ports import free_port

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
{user}pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {base}/access.log;
    client_body_temp_path {base}/tmp/body;
    proxy_temp_path {base}/tmp/proxy;
    fastcgi_temp_path {base}/tmp/fastcgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    scgi_temp_path {base}/tmp/scgi;
    server {{
        listen {host}:{port} ssl;
{listen6}        server_name localhost;
        ssl_certificate {base}/cert.pem;
        ssl_certificate_key {base}/key.pem;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        location / {{
            proxy_pass {upstream};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


@dataclass
class S3TlsProxy:
    """nginx on https://HOST:PORT forwarding to a moto server; ``ca_file`` verifies its certificate."""

    host: str
    port: int
    ca_file: str
    base: Path
    upstream: str
    server_name: str = "localhost"
    _process: Any = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def named_endpoint_url(self) -> str:
        """By name: for clients (pgBackRest 2.45) that match the certificate's DNS SAN, not its IP SAN."""
        return f"https://{self.server_name}:{self.port}"

    def error_log(self) -> str:
        path = self.base / "error.log"
        return path.read_text() if path.exists() else ""


def make_self_signed(base: Path, host: str = "127.0.0.1", days: int = 2) -> tuple[Path, Path]:
    """cert.pem (0644) and key.pem (0600) for CN=localhost, SAN IP:HOST, DNS:localhost."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed: apt-get install openssl (or `make test`)")
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", str(days), "-subj", "/CN=localhost",
                    "-addext", f"subjectAltName=IP:{host},DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    return cert, key


def start_s3_tls_proxy(upstream: str, *, host: str = "127.0.0.1", timeout: float = 10) -> S3TlsProxy:
    """Start nginx (foreground child) terminating TLS for ``upstream`` (http://host:port)."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if nginx is None:
        raise RuntimeError("nginx is not installed: apt-get install nginx-light (or `make test`)")
    if urlparse(upstream).scheme != "http":
        raise ValueError(f"upstream must be plain http://, got {upstream}")
    base = Path(tempfile.mkdtemp(prefix="aep-s3tls-", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "tmp").mkdir()
    cert, _ = make_self_signed(base, host)
    port = free_port()
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""  # workers never run as root
    conf = base / "nginx.conf"
    listen6 = f"        listen [::1]:{port} ssl;\n" if _ipv6_loopback_free(port) else ""  # localhost may be ::1
    conf.write_text(NGINX_CONF.format(base=base, host=host, port=port, upstream=upstream, user=user,
                                      listen6=listen6))
    argv = [nginx, "-p", str(base), "-c", str(conf), "-e", str(base / "error.log")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"nginx -t failed for {conf}: {check.stderr.strip()}")
    with open(base / "stderr.log", "wb") as stderr:  # a file, not a pipe nobody reads until nginx exits
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    proxy = S3TlsProxy(host=host, port=port, ca_file=str(cert), base=base, upstream=upstream, _process=process)
    try:
        _wait_tls(proxy, timeout)
    except BaseException:
        stop_s3_tls_proxy(proxy)
        raise
    return proxy


def stop_s3_tls_proxy(proxy: S3TlsProxy) -> None:
    process = proxy._process
    if process is not None:
        stop_child(process)  # SIGTERM: nginx's fast shutdown
        proxy._process = None
    shutil.rmtree(proxy.base, ignore_errors=True)


def _wait_tls(proxy: S3TlsProxy, timeout: float) -> None:
    context = ssl.create_default_context(cafile=proxy.ca_file)
    deadline = time.monotonic() + timeout
    while True:
        if proxy._process.poll() is not None:
            raise RuntimeError(f"nginx exited with {proxy._process.returncode}: {proxy.error_log().strip()}")
        try:
            with socket.create_connection((proxy.host, proxy.port), timeout=1) as sock:
                with context.wrap_socket(sock, server_hostname=proxy.host):
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not accept TLS on {proxy.endpoint_url} within {timeout:g}s:"
                                   f" {proxy.error_log().strip()}") from None
            time.sleep(0.05)


def _ipv6_loopback_free(port: int) -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", port))
        return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_tls_proxy(moto_server: Any) -> Iterator[S3TlsProxy]:
    """https://127.0.0.1:PORT in front of the session's moto server (trust ``ca_file``)."""
    proxy = start_s3_tls_proxy(moto_server.endpoint_url)
    try:
        yield proxy
    finally:
        stop_s3_tls_proxy(proxy)


class SilentEndpoint:
    """A TCP endpoint that accepts connections and never answers (a firewalled or hung S3 front):
    the fault where a client without its own deadline waits forever. ``port`` is picked by the OS."""

    def __init__(self) -> None:
        import threading

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:  # closed
                return
            self.accepted += 1
            self._held.append(conn)  # held open, never read, never written

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()

