"""The due-gate of ``certs.renew``: is a certificate due for renewal at ``now``, and when will it be?

The rule, first match wins (never a fixed 30 days: with 6-day certificates that renews at every
run, certbot#9261):

1. Expired (``now >= notAfter``): due now.
2. The CA offers ARI (RFC 9773) and answered with a ``suggestedWindow``: renew at a point inside
   the window. The point is deterministic per certificate (a hash of its ARI CertID picks the
   fraction of the window), so every timer run and every ops host agrees on it, and a fleet of
   certificates spreads over the window as the RFC asks. A window already over means due now.
   ``renew_before`` is ignored here: the CA's window is authoritative (it moves the window earlier
   when it must revoke).
3. ``renew_before`` is configured: renew at ``notAfter - renew_before``, but never before the middle
   of the lifetime (a ``renew_before`` as long as the lifetime would renew right after issuance;
   the reason says it was clamped).
4. Otherwise: two thirds of the lifetime after ``notBefore``, or half of it for certificates that
   live less than 10 days (as certbot and Let's Encrypt's short-lived profile recommend).

``fetch_renewal_info`` asks the CA for the window; its result is what ``renewal_info`` takes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from aep_ops.certs.acme_issue import AcmeError

SHORT_LIVED = dt.timedelta(days=10)


@dataclass(frozen=True)
class Decision:
    """``due`` when ``now >= renew_at``; ``reason`` says which rule chose ``renew_at``."""

    due: bool
    renew_at: dt.datetime
    reason: str


def renewal_decision(cert_pem: bytes | str, *, now: dt.datetime, renewal_info: dict | None = None,
                     renew_before: dt.timedelta | None = None) -> Decision:
    """Apply the module's rule. ``renewal_info`` has aware ``start``/``end`` (``fetch_renewal_info``)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime (UTC)")
    cert = _load(cert_pem)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if now >= not_after:
        return Decision(True, not_after, f"expired at {_iso(not_after)}")
    if renewal_info:
        renew_at, reason = _ari_point(cert, renewal_info)
    elif renew_before is not None:
        renew_at, reason = _renew_before_point(not_before, not_after, renew_before)
    else:
        renew_at, reason = _lifetime_point(not_before, not_after)
    return Decision(now >= renew_at, renew_at, reason)


def _ari_point(cert: Any, renewal_info: dict) -> tuple[dt.datetime, str]:
    start, end = renewal_info["start"], renewal_info["end"]
    if start.tzinfo is None or end.tzinfo is None or end < start:
        raise ValueError(f"ARI window must be aware datetimes with start <= end, got {start!r}..{end!r}")
    digest = hashlib.sha256(_cert_id(cert).encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    renew_at = start + (end - start) * fraction
    return renew_at, f"ARI window {_iso(start)}..{_iso(end)} (this certificate's point {_iso(renew_at)})"


def _renew_before_point(not_before: dt.datetime, not_after: dt.datetime,
                        renew_before: dt.timedelta) -> tuple[dt.datetime, str]:
    if renew_before <= dt.timedelta(0):
        raise ValueError(f"renew_before must be positive, got {renew_before}")
    lifetime = not_after - not_before
    middle = not_before + lifetime / 2
    renew_at = not_after - renew_before
    if renew_at < middle:
        return middle, (f"renew_before {_span(renew_before)} exceeds half the {_span(lifetime)} lifetime:"
                        f" clamped to its middle")
    return renew_at, f"renew_before {_span(renew_before)} before notAfter {_iso(not_after)}"


def _lifetime_point(not_before: dt.datetime, not_after: dt.datetime) -> tuple[dt.datetime, str]:
    lifetime = not_after - not_before
    if lifetime < SHORT_LIVED:
        return not_before + lifetime / 2, f"half of the {_span(lifetime)} lifetime (under 10 days)"
    return not_before + lifetime * 2 / 3, f"two thirds of the {_span(lifetime)} lifetime"


def ari_cert_id(cert_pem: bytes | str) -> str:
    """RFC 9773 CertID: base64url(AKI keyIdentifier) "." base64url(serial as DER INTEGER bytes), unpadded."""
    return _cert_id(_load(cert_pem))


def _cert_id(cert: Any) -> str:
    from cryptography import x509

    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        aki = None
    if aki is None or aki.key_identifier is None:
        raise AcmeError(f"certificate serial {cert.serial_number:x} has no Authority Key Identifier:"
                        f" ARI cannot name it")
    serial = cert.serial_number
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)  # room for the sign bit
    return f"{_b64url(aki.key_identifier)}.{_b64url(serial_der)}"


def fetch_renewal_info(directory_url: str, cert_pem: bytes | str, *, ca_bundle: str | None,
                       timeout: float) -> dict | None:
    """The CA's suggested window for this certificate: {"start", "end" (aware UTC), "retry_after"
    (seconds or None), "explanation_url"}; None when the directory offers no ``renewalInfo`` or
    the CA does not know the certificate (404: issued elsewhere), so the lifetime rule applies."""
    directory = _get_json(directory_url, ca_bundle, timeout, f"ACME directory {directory_url}").json()
    base = directory.get("renewalInfo") if isinstance(directory, dict) else None
    if not base:
        return None
    url = f"{base.rstrip('/')}/{ari_cert_id(cert_pem)}"
    response = _get_json(url, ca_bundle, timeout, f"ACME renewal info {url}", missing_ok=True)
    if response is None:
        return None
    return _parse_renewal_info(response, url)


def _parse_renewal_info(response: Any, url: str) -> dict:
    import josepy
    from acme import messages

    try:
        info = messages.RenewalInfo.from_json(response.json())
        start, end = info.suggested_window.start, info.suggested_window.end
    except (ValueError, josepy.errors.Error, AttributeError) as exc:
        raise AcmeError(f"ACME renewal info {url} is not a valid RFC 9773 answer: {type(exc).__name__};"
                        f" check the CA (the due-gate cannot use this window)") from exc
    if start is None or end is None or end < start:
        raise AcmeError(f"ACME renewal info {url} has no usable suggestedWindow; check the CA")
    return {"start": start.astimezone(dt.timezone.utc), "end": end.astimezone(dt.timezone.utc),
            "retry_after": _retry_after_seconds(response.headers.get("Retry-After")),
            "explanation_url": (response.json().get("explanationURL") or None)}


def _get_json(url: str, ca_bundle: str | None, timeout: float, what: str, missing_ok: bool = False) -> Any:
    import requests

    from aep_ops.certs.acme_issue import network_reason

    try:
        response = requests.get(url, verify=ca_bundle or True, timeout=timeout,
                                headers={"User-Agent": "aep-ops", "Accept": "application/json"})
    except requests.exceptions.RequestException as exc:
        raise AcmeError(f"{what} unreachable: {network_reason(exc)}; check acme.directory and that the CA"
                        f" is up") from exc
    if missing_ok and response.status_code == 404:
        return None
    if response.status_code != 200:
        raise AcmeError(f"{what} answered HTTP {response.status_code}; check acme.directory and the CA's status")
    try:
        response.json()
    except ValueError as exc:
        raise AcmeError(f"{what} did not answer JSON; check that acme.directory is an ACME directory") from exc
    return response


def _retry_after_seconds(value: str | None) -> int | None:
    """Retry-After as seconds: an integer or an HTTP date (RFC 9110)."""
    if not value:
        return None
    if value.strip().isdigit():
        return int(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0, int((when - dt.datetime.now(dt.timezone.utc)).total_seconds()))


def _load(cert_pem: bytes | str) -> Any:
    from cryptography import x509

    return x509.load_pem_x509_certificate(cert_pem.encode() if isinstance(cert_pem, str) else cert_pem)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _span(delta: dt.timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:g}d" if days >= 1 else f"{delta.total_seconds() / 3600:g}h"
