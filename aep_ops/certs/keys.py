"""Certificate private keys and CSRs, built with ``cryptography`` and ``acme.crypto_util``.

Key types are named the way the configuration names them ("ecdsa-p256", "rsa-2048",
"rsa-3072"); ECDSA P-256 is the default: small, fast, and accepted by every public CA and by
nginx and ACM. Keys are serialised as unencrypted PKCS#8 PEM because nginx reads them at
reload without a passphrase; protecting them is the job of file modes and the secret store.
"""

from __future__ import annotations

from typing import Any, Sequence

from aep_ops.base.errors import UsageError

DEFAULT_KEY_TYPE = "ecdsa-p256"
KEY_TYPES = ("ecdsa-p256", "rsa-2048", "rsa-3072")


def check_key_type(key_type: str) -> str:
    """Refuse an unknown key type before anything is generated or sent to a CA."""
    if key_type not in KEY_TYPES:
        raise UsageError(f"unknown key type {key_type!r}: use one of {', '.join(KEY_TYPES)}")
    return key_type


def generate_private_key(key_type: str = DEFAULT_KEY_TYPE) -> Any:
    """A fresh private key of ``key_type`` (a new key at every issuance: no key reuse across certs)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    check_key_type(key_type)
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.split("-")[1]))


def private_key_pem(private_key: Any) -> bytes:
    """PKCS#8 PEM without encryption: what nginx and ACM import read directly."""
    from cryptography.hazmat.primitives import serialization

    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())


def make_csr_pem(key_pem: bytes | str, domains: Sequence[str]) -> bytes:
    """A CSR naming ``domains`` as subjectAltNames only: ACME CAs read SANs and ignore the CN."""
    from acme import crypto_util

    names = [d.strip().lower() for d in domains]
    if not names or any(not n for n in names):
        raise UsageError("a certificate needs at least one non-empty domain name")
    return crypto_util.make_csr(_as_bytes(key_pem), list(dict.fromkeys(names)))


def key_kind(public_key: Any) -> tuple[str, int]:
    """("RSA", 2048), ("ECDSA P-256", 256), ("Ed25519", 256)...: the type and its size in bits."""
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        return f"ECDSA {curves.get(public_key.curve.name, public_key.curve.name)}", public_key.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size
    return type(public_key).__name__, 0


def key_type_of(public_key: Any) -> str:
    """A public key's type in the configuration's names: ``ecdsa-p256``, ``rsa-2048``..."""
    kind, bits = key_kind(public_key)
    if kind == "RSA":
        return f"rsa-{bits}"
    if kind.startswith("ECDSA P-"):
        return f"ecdsa-p{kind.removeprefix('ECDSA P-')}"
    return kind.lower()


def key_description(public_key: Any) -> str:
    """"ECDSA P-256" / "RSA 2048": how an on-call engineer names a key in a report."""
    name, bits = key_kind(public_key)
    return f"RSA {bits}" if name == "RSA" else name


def key_matches_cert(key_pem: bytes | str, cert_pem: bytes | str) -> bool:
    """True when the certificate (the first in ``cert_pem``) carries this key's public key:
    nginx refuses a mismatched pair at ``nginx -t``, so check before deploying."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(_as_bytes(key_pem), password=None)
    cert = x509.load_pem_x509_certificate(_as_bytes(cert_pem))
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


def _as_bytes(pem: bytes | str) -> bytes:
    return pem.encode() if isinstance(pem, str) else pem
