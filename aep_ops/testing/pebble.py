"""A real ACME CA for tests: Debian's ``pebble`` with ``pebble-challtestsrv`` as its DNS.

FIELD-NOTES: pebble's package ships no TLS certificate, so a small CA and a 127.0.0.1/localhost
server certificate are made here with ``cryptography`` (clients trust ``ca_file``). challtestsrv
answers every A query with 127.0.0.1 (no AAAA), so pebble's http-01 validation connects to
127.0.0.1:``http_port``, where a test serves its webroot; dns-01 TXT records are set through
challtestsrv's management API (``set_txt``/``clear_txt``). Defaults make runs deterministic:
PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0 (pebble rejects 5 % of nonces otherwise; a test
that wants rejections asks for them) and PEBBLE_AUTHZREUSE=0 (every order gets fresh challenges).
``start_pebble(dns_server="HOST:PORT")`` makes pebble resolve through another DNS server instead
(no challtestsrv then), e.g. ``route53dns.Route53DnsServer`` serving a moto hosted zone.
Every port comes from ``aep_ops.testing.ports.free_port``; readiness is a condition (the directory
answers over TLS, challtestsrv answers HTTP and DNS), never a sleep. Missing binaries are an
error naming the package, never a skip.

pebble 2.4 has no ARI (RFC 9773): ``AriShim`` is an HTTPS front that serves pebble's directory
plus a ``renewalInfo`` URL answering with a window the test sets; anything else is redirected.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest

from aep_ops.base.processes import stop_child
from aep_ops.testing.ports import free_port

HOST = "127.0.0.1"


@dataclass
class Pebble:
    """A running pebble and its challtestsrv; ``ca_file`` verifies both pebble ports.
    ``challtestsrv_port`` is None when pebble resolves through an external ``dns_port``."""

    base: Path
    acme_port: int
    management_port: int
    http_port: int
    dns_port: int
    challtestsrv_port: int | None
    ca_file: str
    _processes: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)

    @property
    def directory_url(self) -> str:
        return f"https://{HOST}:{self.acme_port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://{HOST}:{self.management_port}"

    @property
    def challtestsrv_url(self) -> str:
        return f"http://{HOST}:{self.challtestsrv_port}"

    def roots(self) -> list[str]:
        """PEM of the current issuing root (``/roots/0``; it changes at every pebble start)."""
        return [_https_get(f"{self.management_url}/roots/0", self.ca_file).decode()]

    def set_txt(self, name: str, value: str) -> None:
        """Add a TXT value for ``name`` (challtestsrv keeps every value added for a name)."""
        self._challtestsrv("/set-txt", {"host": _fqdn(name), "value": value})

    def clear_txt(self, name: str) -> None:
        """Remove every TXT value of ``name``."""
        self._challtestsrv("/clear-txt", {"host": _fqdn(name)})

    def stderr(self) -> str:
        return "\n".join(f"{name}: {(self.base / f'{name}.log').read_text(errors='replace').strip()}"
                         for name in self._processes if (self.base / f"{name}.log").exists())

    def _challtestsrv(self, path: str, body: dict) -> None:
        if self.challtestsrv_port is None:
            raise RuntimeError(f"this pebble resolves through an external DNS server (port {self.dns_port}),"
                               " not challtestsrv: set records in that server's source")
        conn = http.client.HTTPConnection(HOST, self.challtestsrv_port, timeout=10)
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"challtestsrv {path} answered HTTP {response.status}")


def start_pebble(nonce_reject: int = 0, validity_seconds: int | None = None, *, authz_reuse: int = 0,
                 timeout: float = 30, dns_server: str | None = None) -> Pebble:
    """Start challtestsrv, then pebble using it as DNS; return once both answer. With
    ``dns_server`` ("127.0.0.1:PORT", already answering), pebble resolves through it instead."""
    needed = ("pebble",) if dns_server else ("pebble", "pebble-challtestsrv")
    binaries = {name: shutil.which(name) for name in needed}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not installed: apt-get install pebble (or `make test`)")
    base = Path(tempfile.mkdtemp(prefix="aep-pebble-", dir="/tmp"))
    ca_file = make_tls_files(base)
    dns_host, dns_port = dns_server.rsplit(":", 1) if dns_server else (HOST, str(free_port()))
    server = Pebble(base=base, acme_port=free_port(), management_port=free_port(), http_port=free_port(),
                    dns_port=int(dns_port), challtestsrv_port=None if dns_server else free_port(),
                    ca_file=str(ca_file))
    config = base / "pebble-config.json"
    config.write_text(json.dumps(_pebble_config(server, free_port(), validity_seconds), indent=2))
    try:
        if not dns_server:
            _spawn(server, "challtestsrv", [
                binaries["pebble-challtestsrv"], "-defaultIPv4", HOST, "-defaultIPv6", "",
                "-dns01", f"{HOST}:{server.dns_port}", "-management", f"{HOST}:{server.challtestsrv_port}",
                "-http01", "", "-https01", "", "-tlsalpn01", ""], {})
            _wait_for(server, "challtestsrv", lambda: _challtestsrv_answers(server), timeout)
        env = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
               "PEBBLE_AUTHZREUSE": str(authz_reuse)}
        _spawn(server, "pebble", [binaries["pebble"], "-config", str(config),
                                  "-dnsserver", f"{dns_host}:{server.dns_port}"], env)
        _wait_for(server, "pebble", lambda: _pebble_answers(server), timeout)
    except BaseException:
        stop_pebble(server)
        raise
    return server


def stop_pebble(server: Pebble) -> None:
    """Stop pebble, then challtestsrv (terminate, wait, kill), and remove the temp dir."""
    for name in ("pebble", "challtestsrv"):
        process = server._processes.pop(name, None)
        if process is not None:
            stop_child(process)
    shutil.rmtree(server.base, ignore_errors=True)


def make_tls_files(base: Path) -> Path:
    """ca.pem (returned), cert.pem and key.pem for 127.0.0.1/localhost under ``base``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aep-ops test pebble CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (base / "ca.pem").write_bytes(ca.public_bytes(pem))
    (base / "cert.pem").write_bytes(leaf.public_bytes(pem))
    key_path = base / "key.pem"
    key_path.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    key_path.chmod(0o600)
    return base / "ca.pem"


def _pebble_config(server: Pebble, tls_port: int, validity_seconds: int | None) -> dict:
    config: dict[str, Any] = {
        "listenAddress": f"{HOST}:{server.acme_port}",
        "managementListenAddress": f"{HOST}:{server.management_port}",
        "certificate": str(server.base / "cert.pem"), "privateKey": str(server.base / "key.pem"),
        "httpPort": server.http_port, "tlsPort": tls_port,
        "ocspResponderURL": "", "externalAccountBindingRequired": False}
    if validity_seconds is not None:
        config["certificateValidityPeriod"] = int(validity_seconds)
    return {"pebble": config}


def _spawn(server: Pebble, name: str, argv: list, env: dict) -> None:
    with open(server.base / f"{name}.log", "wb") as log:  # a file, not a pipe nobody reads
        server._processes[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=server.base,
                                                   env={**os.environ, **env})


def _wait_for(server: Pebble, name: str, ready: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        process = server._processes[name]
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {server.stderr()}")
        if ready():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} not ready within {timeout:g}s: {server.stderr()}")
        time.sleep(0.05)  # poll interval of the readiness condition, not a wait in itself


def _pebble_answers(server: Pebble) -> bool:
    try:
        return b"newNonce" in _https_get(server.directory_url, server.ca_file)
    except (OSError, RuntimeError):
        return False


def _challtestsrv_answers(server: Pebble) -> bool:
    """The management API answers HTTP and the DNS server resolves a name to 127.0.0.1."""
    import dns.exception
    import dns.message
    import dns.query

    try:
        conn = http.client.HTTPConnection(HOST, server.challtestsrv_port, timeout=1)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        answer = dns.query.udp(dns.message.make_query("ready.aep.test.", "A"), HOST, port=server.dns_port,
                               timeout=1)
        return any(HOST in rrset.to_text() for rrset in answer.answer)
    except (OSError, dns.exception.DNSException):
        return False


def _https_get(url: str, ca_file: str) -> bytes:
    parts = urlparse(url)
    context = ssl.create_default_context(cafile=ca_file)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=5)
    try:
        conn.request("GET", parts.path or "/")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {url} answered HTTP {response.status}")
    return body


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else f"{name}."


class AriShim:
    """https://127.0.0.1:PORT/dir = pebble's directory + ``renewalInfo``; windows set by the test.

    ``set_window`` answers every CERTID (or one ``cert_id``) with that window; an unknown CERTID
    gets 404 (as a CA answers for a certificate it does not know). ``requested`` lists the CERTIDs
    asked for, so a test can check the client named the certificate as RFC 9773 says.
    """

    def __init__(self, server: Pebble) -> None:
        self.pebble = server
        self.port = free_port()
        self.requested: list[str] = []
        self._windows: dict[str | None, tuple[dict, int | None]] = {}
        self._httpd = ThreadingHTTPServer((HOST, self.port), _shim_handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(server.base / "cert.pem", server.base / "key.pem")
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ari-shim", daemon=True)
        self._thread.start()

    @property
    def directory_url(self) -> str:
        return f"https://{HOST}:{self.port}/dir"

    @property
    def ca_file(self) -> str:
        return self.pebble.ca_file

    def set_window(self, start: dt.datetime, end: dt.datetime, *, cert_id: str | None = None,
                   retry_after: int | None = 21600) -> None:
        window = {"start": start.isoformat().replace("+00:00", "Z"), "end": end.isoformat().replace("+00:00", "Z")}
        self._windows[cert_id] = ({"suggestedWindow": window}, retry_after)

    def clear_windows(self) -> None:
        self._windows.clear()

    def window_for(self, cert_id: str) -> tuple[dict, int | None] | None:
        self.requested.append(cert_id)
        return self._windows.get(cert_id) or self._windows.get(None)

    def directory(self) -> dict:
        body = json.loads(_https_get(self.pebble.directory_url, self.pebble.ca_file))
        body["renewalInfo"] = f"https://{HOST}:{self.port}/renewalInfo"
        return body

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def _shim_handler(shim: AriShim) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/dir":
                return self._json(200, shim.directory())
            if self.path.startswith("/renewalInfo/"):
                found = shim.window_for(self.path.removeprefix("/renewalInfo/"))
                if found is None:
                    return self._json(404, {"type": "urn:ietf:params:acme:error:malformed",
                                            "detail": "no renewal info for this certificate"})
                body, retry_after = found
                return self._json(200, body, {"Retry-After": str(retry_after)} if retry_after else {})
            self.send_response(307)
            self.send_header("Location", f"https://{HOST}:{shim.pebble.acme_port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _json(self, status: int, body: dict, headers: dict | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if status < 400 else "application/problem+json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
            pass

    return Handler


@pytest.fixture(scope="session")
def pebble() -> Iterator[Pebble]:
    """A pebble for the session: no nonce rejection, fresh authorizations, real validation."""
    server = start_pebble()
    try:
        yield server
    finally:
        stop_pebble(server)


@pytest.fixture(scope="session")
def ari_shim(pebble: Pebble) -> Iterator[AriShim]:
    """An ARI front for the session's pebble; tests call ``set_window`` (and ``clear_windows``)."""
    shim = AriShim(pebble)
    try:
        yield shim
    finally:
        shim.close()
