"""One TLS endpoint, looked at over fresh connections, within one deadline.

Handshakes, each on its own connection:
1. the best protocol both sides speak, verifying the chain against the trust store with
   OpenSSL (what Node's clients use; OpenSSL never fetches a missing intermediate through AIA,
   so a chain that verifies here verifies there);
2. when that verification fails, once more without verifying, to read the certificate anyway;
3. and 4. TLS 1.0 and TLS 1.1 only, at OpenSSL security level 0. OpenSSL 3 refuses to even
   send a TLS 1.0 ClientHello at the default level, so "my TLS 1.0 handshake failed" proves
   nothing about the server unless this machine really offered 1.0: ``legacy_offer_problem``
   proves it by looking at the ClientHello's bytes before any endpoint is asked.
The certificate is read with ``cryptography``; nothing here parses X.509 by hand.
"""

from __future__ import annotations

import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from aep_ops.certs.endpoints import Endpoint

LEGACY = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1}
ACCEPTED, REFUSED = "accepted", "refused"
# A ClientHello's record starts 0x16 (handshake) 0x03 0x0N; its client_version is 3.1 for TLS 1.0.
_CLIENT_VERSION = {"TLSv1": b"\x03\x01", "TLSv1.1": b"\x03\x02"}


@dataclass
class Probe:
    """What one endpoint showed. ``error`` set: it could not be looked at (no other field is)."""

    endpoint: Endpoint
    error: str | None = None
    protocol: str | None = None
    cipher: str | None = None
    leaf_der: bytes | None = None
    chain_sent: int = 0  # certificates the server sent, the leaf included
    chain_error: str | None = None  # None: verified against the trust store
    legacy: dict[str, str] = field(default_factory=dict)  # "TLSv1" -> accepted | refused | why not tested
    elapsed: float = 0.0


def probe(endpoint: Endpoint, *, trust: ssl.SSLContext, timeout: float) -> Probe:
    """Look at ``endpoint`` through ``trust`` (a verifying context, ``trust_context``); every
    connection and handshake ends by ``timeout`` seconds from now."""
    started = time.monotonic()
    deadline = started + timeout
    result = Probe(endpoint)
    try:
        _main_handshakes(endpoint, trust, deadline, result)
        for name in LEGACY:
            result.legacy[name] = _legacy(endpoint, name, deadline)
    except (OSError, ssl.SSLError) as exc:
        result.error = describe_error(exc, endpoint, timeout)
    finally:
        result.elapsed = time.monotonic() - started
    return result


def trust_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifies chains against ``ca_file`` alone when given, else the system's trust store;
    names are checked separately (a mismatch is one finding, not a failed handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    else:
        context.load_default_certs()
    return context


@lru_cache(maxsize=None)
def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@lru_cache(maxsize=None)
def legacy_context(name: str) -> ssl.SSLContext:
    """A client that offers only ``name`` (TLSv1 or TLSv1.1), with every cipher allowed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # Python deprecates these versions; offering them is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = LEGACY[name]
        context.maximum_version = LEGACY[name]
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


@lru_cache(maxsize=None)
def legacy_offer_problem(name: str) -> str | None:
    """None when this machine really sends a ``name`` ClientHello; else why not. Proven on
    memory buffers, with no network: the first bytes out must be a handshake record whose
    ClientHello asks for that version."""
    try:
        outgoing = ssl.MemoryBIO()
        tls = legacy_context(name).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=None)
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = outgoing.read()
    except ssl.SSLError as exc:
        return f"this machine's OpenSSL will not offer {name} ({exc.reason or exc})"
    if len(hello) > 10 and hello[0] == 0x16 and hello[9:11] == _CLIENT_VERSION[name]:
        return None
    return f"this machine's OpenSSL did not send a {name} ClientHello"


def _main_handshakes(endpoint: Endpoint, trust: ssl.SSLContext, deadline: float, result: Probe) -> None:
    try:
        _handshake(endpoint, trust, deadline, result)
        return
    except ssl.SSLCertVerificationError as exc:
        result.chain_error = exc.verify_message or exc.reason or str(exc)
    _handshake(endpoint, _unverified_context(), deadline, result)


def _handshake(endpoint: Endpoint, context: ssl.SSLContext, deadline: float, result: Probe) -> None:
    with _connected(endpoint, context, deadline) as tls:
        result.protocol = tls.version()
        cipher = tls.cipher()
        result.cipher = cipher[0] if cipher else None
        result.leaf_der = tls.getpeercert(binary_form=True)
        result.chain_sent = len(_sent_chain(tls))


def _legacy(endpoint: Endpoint, name: str, deadline: float) -> str:
    problem = legacy_offer_problem(name)
    if problem:
        return f"not tested: {problem}"
    try:
        with _connected(endpoint, legacy_context(name), deadline) as tls:
            return ACCEPTED if tls.version() == name else REFUSED
    except ssl.SSLError:
        return REFUSED  # an alert or a reset in answer to a hello we know was sent
    except ConnectionError:
        return REFUSED


class _connected:
    """A TLS connection whose connect and handshake end by ``deadline``; closed on exit."""

    def __init__(self, endpoint: Endpoint, context: ssl.SSLContext, deadline: float) -> None:
        self.endpoint, self.context, self.deadline = endpoint, context, deadline
        self.tls: ssl.SSLSocket | None = None

    def __enter__(self) -> ssl.SSLSocket:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline reached")
        sock = socket.create_connection((self.endpoint.address, self.endpoint.port), timeout=remaining)
        try:
            sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
            self.tls = self.context.wrap_socket(sock, server_hostname=self.endpoint.sni)
        except BaseException:
            sock.close()
            raise
        return self.tls

    def __exit__(self, *exc: object) -> None:
        if self.tls is not None:
            self.tls.close()


def _sent_chain(tls: ssl.SSLSocket) -> list[Any]:
    """The certificates the server sent (Python 3.13 has a public method; 3.11's is on _sslobj)."""
    getter = getattr(tls, "get_unverified_chain", None) or getattr(tls._sslobj, "get_unverified_chain", None)
    return list(getter() or []) if getter else []


def describe_error(exc: BaseException, endpoint: Endpoint, timeout: float) -> str:
    """One line for an endpoint that could not be looked at (the endpoint's label precedes it)."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {endpoint.address}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening on that port?)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return str(exc.strerror or exc) if isinstance(exc, OSError) else str(exc)


def served_serial(endpoint: Endpoint, timeout: float) -> str:
    """The serial (lowercase hex) of the certificate ``endpoint`` serves now, over a fresh
    connection and without verifying: a deploy asks "which one", not "is it trusted"."""
    from cryptography import x509

    with _connected(endpoint, _unverified_context(), time.monotonic() + timeout) as tls:
        der = tls.getpeercert(binary_form=True)
    return format(x509.load_der_x509_certificate(der).serial_number, "x")
