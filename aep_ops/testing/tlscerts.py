"""A small test PKI made with ``cryptography``: a root, an intermediate, and leaves good or bad
on purpose (expired, not yet valid, wrong name, self-signed, RSA-1024, served without their
intermediate), so certificate checks are tested against real handshakes with real nginx.

    pki = TestPki(tmp_path)
    good = pki.leaf("good", ["api.aep.test"])          # good.pem, good.fullchain.pem, good.key.pem
    pki.root_file                                      # the trust store clients verify against
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LeafFiles:
    name: str
    cert: Path  # the leaf alone
    fullchain: Path  # leaf + intermediate
    key: Path
    serial: str  # hex, as findings report it


class TestPki:
    """Root and intermediate CAs under ``base``; ``leaf()`` issues certificates from them."""

    __test__ = False  # not a pytest test class

    def __init__(self, base: Path, *, name: str = "aep-ops test") -> None:
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.root_key = _key("ec")
        self.root = _build(f"{name} root", self.root_key.public_key(), self.root_key, None, ca=True)
        self.intermediate_key = _key("ec")
        self.intermediate = _build(f"{name} intermediate", self.intermediate_key.public_key(), self.root_key,
                                   self.root, ca=True)
        self.root_file = self.base / "root.pem"
        self.root_file.write_bytes(_pem(self.root))
        self.intermediate_file = self.base / "intermediate.pem"
        self.intermediate_file.write_bytes(_pem(self.intermediate))

    def leaf(self, name: str, domains: list[str], *, key: str = "ec", days: float = 90, starts_in_days: float = -1,
             self_signed: bool = False, ips: tuple[str, ...] = ()) -> LeafFiles:
        """A server certificate valid from ``starts_in_days`` for ``days`` (negative start: already
        valid; ``starts_in_days=-100, days=10``: expired), issued by the intermediate (or by itself)."""
        private = _key(key)
        start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=starts_in_days)
        issuer_key, issuer = (private, None) if self_signed else (self.intermediate_key, self.intermediate)
        cert = _build(domains[0] if domains else name, private.public_key(), issuer_key, issuer, ca=False,
                      domains=domains, ips=ips, start=start, end=start + dt.timedelta(days=days))
        files = LeafFiles(name, self.base / f"{name}.pem", self.base / f"{name}.fullchain.pem",
                          self.base / f"{name}.key.pem", format(cert.serial_number, "x"))
        files.cert.write_bytes(_pem(cert))
        files.fullchain.write_bytes(_pem(cert) + (b"" if self_signed else _pem(self.intermediate)))
        _write_key(files.key, private)
        return files


def _key(kind: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:] or 2048))
    raise ValueError(f"unknown key kind {kind!r}")


def _build(common_name: str, public_key: Any, signing_key: Any, issuer: Any, *, ca: bool,
           domains: list[str] | None = None, ips: tuple[str, ...] = (), start: dt.datetime | None = None,
           end: dt.datetime | None = None) -> Any:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer is not None else subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(start or now - dt.timedelta(days=1))
               .not_valid_after(end or now + dt.timedelta(days=3650))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        names = [x509.DNSName(d) for d in domains or []] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
