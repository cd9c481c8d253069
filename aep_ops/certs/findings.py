"""What a probe means: the certificate's facts, and each problem with its severity.

Critical (exit 5): unreachable, expired or not yet valid, a name the certificate does not
cover, a chain that does not verify (a missing intermediate), a weak key, TLS 1.0 or 1.1
accepted, fewer days left than ``critical_days``. Warning (exit 0): fewer than ``warn_days``,
a legacy protocol this machine could not offer. Thresholds come from ``certs:`` in the
configuration (``aep_ops.certs.settings``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from typing import Any

from aep_ops.certs.keys import key_kind
from aep_ops.certs.probe import ACCEPTED, REFUSED, Probe

CRITICAL, WARNING, OK = "critical", "warning", "ok"
MIN_RSA_BITS = 2048
DAY = 86400.0


@dataclass(frozen=True)
class Thresholds:
    warn_days: int = 30
    critical_days: int = 7


def certificate_facts(der: bytes) -> dict[str, Any]:
    """Subject, names, issuer, serial, validity and key of a DER certificate (read by cryptography).
    Every host of a role serves the same certificate: each distinct one is read once."""
    return dict(_facts(der))


@lru_cache(maxsize=1024)
def _facts(der: bytes) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    common = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    key_type, key_bits = key_kind(cert.public_key())
    return {
        "subject": cert.subject.rfc4514_string(), "common_name": str(common[0].value) if common else None,
        "dns_names": list(dns), "ip_addresses": ips, "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"), "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(), "key_type": key_type, "key_bits": key_bits,
        "self_signed": cert.issuer == cert.subject,
    }


def name_covered(name: str, dns_names: list[str], ip_addresses: list[str]) -> bool:
    """RFC 6125: an exact name, or a wildcard as the whole leftmost label matching one label;
    an address only against the IP entries. No fall-back to the CN (browsers dropped it)."""
    try:
        return ipaddress.ip_address(name) in {ipaddress.ip_address(ip) for ip in ip_addresses}
    except ValueError:
        pass
    name = name.lower().rstrip(".")
    for entry in (d.lower().rstrip(".") for d in dns_names):
        if entry == name:
            return True
        if entry.startswith("*.") and "." in name and name.split(".", 1)[1] == entry[2:] \
                and name.split(".", 1)[0] not in ("", "*"):
            return True
    return False


def assess(probe: Probe, thresholds: Thresholds, now: datetime, trust_name: str) -> dict[str, Any]:
    """The probe as one row: facts, problems (each ``{code, severity, message}``) and the worst
    severity as ``status``."""
    row: dict[str, Any] = {**probe.endpoint.to_json(), "elapsed_seconds": round(probe.elapsed, 3)}
    if probe.error or probe.leaf_der is None:
        problems = [_problem("unreachable", CRITICAL, probe.error or "no certificate was presented")]
        return {**row, "status": CRITICAL, "problems": problems}
    facts = certificate_facts(probe.leaf_der)
    seconds_left = (datetime.fromisoformat(facts["not_after"]) - now).total_seconds()
    row.update(facts, protocol=probe.protocol, cipher=probe.cipher, chain_sent=probe.chain_sent,
               chain_verified=probe.chain_error is None, chain_error=probe.chain_error,
               legacy_protocols=dict(probe.legacy), seconds_left=round(seconds_left, 3),
               days_left=round(seconds_left / DAY, 2))
    problems = (_validity(facts, seconds_left, now, thresholds) + _name(probe, facts) + _chain(probe, trust_name)
                + _key(facts) + _legacy(probe))
    return {**row, "status": worst(problems), "problems": problems}


def worst(problems: list[dict[str, Any]]) -> str:
    severities = {p["severity"] for p in problems}
    return CRITICAL if CRITICAL in severities else WARNING if WARNING in severities else OK


def _problem(code: str, severity: str, message: str) -> dict[str, Any]:
    return {"code": code, "severity": severity, "message": message}


def _validity(facts: dict[str, Any], seconds_left: float, now: datetime, t: Thresholds) -> list[dict[str, Any]]:
    from aep_ops.base.textfmt import duration

    if datetime.fromisoformat(facts["not_before"]) > now:
        return [_problem("not_yet_valid", CRITICAL, f"not valid before {facts['not_before']}"
                                                    " (a clock or a certificate issued in the future)")]
    if seconds_left <= 0:
        return [_problem("expired", CRITICAL, f"expired {duration(-seconds_left)} ago ({facts['not_after']})")]
    days = seconds_left / DAY
    if days < t.critical_days:
        return [_problem("expires_soon", CRITICAL, f"expires in {duration(seconds_left)}"
                                                   f" (critical below {t.critical_days} days): renew now")]
    if days < t.warn_days:
        return [_problem("expires_soon", WARNING, f"expires in {days:.0f} days (warning below {t.warn_days})")]
    return []


def _name(probe: Probe, facts: dict[str, Any]) -> list[dict[str, Any]]:
    name = probe.endpoint.sni or probe.endpoint.address
    if name_covered(name, facts["dns_names"], facts["ip_addresses"]):
        return []
    names = facts["dns_names"] + facts["ip_addresses"]
    covers = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "") if names else \
        f"no subjectAltName at all (CN {facts['common_name']!r} is not enough for browsers or Node)"
    return [_problem("name_mismatch", CRITICAL, f"{name} is not on the certificate, which covers {covers}")]


def _chain(probe: Probe, trust_name: str) -> list[dict[str, Any]]:
    error = probe.chain_error
    if error is None or any(word in error for word in ("expired", "not yet valid", "key too")):
        return []  # validity and key size are findings of their own
    hint = ""
    if "local issuer" in error and probe.chain_sent <= 1:
        hint = ": the server sends no intermediate certificate (serve the full chain)"
    elif "self-signed" in error or "self signed" in error:
        hint = " (issue one from the CA, or trust its issuer with --ca-file)"
    return [_problem("chain_invalid", CRITICAL, f"chain does not verify against {trust_name}: {error}{hint}")]


def _key(facts: dict[str, Any]) -> list[dict[str, Any]]:
    if facts["key_type"] == "RSA" and facts["key_bits"] < MIN_RSA_BITS:
        return [_problem("weak_key", CRITICAL, f"RSA {facts['key_bits']}-bit key (at least {MIN_RSA_BITS} required)")]
    if facts["key_type"] == "DSA":
        return [_problem("weak_key", CRITICAL, "DSA key (use ECDSA P-256 or RSA 2048+)")]
    return []


def _legacy(probe: Probe) -> list[dict[str, Any]]:
    out = []
    for name, answer in probe.legacy.items():
        if answer == ACCEPTED:
            out.append(_problem(f"{name.lower().replace('.', '_')}_accepted", CRITICAL,
                                f"accepts {name} (TLS 1.2+ is required): set ssl_protocols TLSv1.2 TLSv1.3"))
        elif answer != REFUSED:
            out.append(_problem("legacy_untested", WARNING, f"{name} {answer}"))
    return out
