"""certs.renew's due-gate: ARI window, else 2/3 of the lifetime (1/2 under 10 days), renew_before
as a clamped override; and the RFC 9773 CertID."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from aep_ops.certs.acme_issue import AcmeError
from aep_ops.certs.due import ari_cert_id, renewal_decision

ISSUED = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)
_KEY = ec.generate_private_key(ec.SECP256R1())


def make_cert(*, lifetime: dt.timedelta, not_before: dt.datetime = ISSUED, serial: int = 0x1234,
              aki: bytes | None = b"\x01" * 20) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aep.test")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(_KEY.public_key())
               .serial_number(serial).not_valid_before(not_before).not_valid_after(not_before + lifetime))
    if aki is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize("lifetime, age, due", [
    (90 * DAY, 59 * DAY, False),
    (90 * DAY, 61 * DAY, True),
    (90 * DAY, 60 * DAY, True),             # exactly two thirds
    (6 * DAY, dt.timedelta(hours=71), False),  # half of 6 days is 72 hours
    (6 * DAY, dt.timedelta(hours=73), True),
    (10 * DAY, 6 * DAY, False),             # 10 days is not "under 10 days": two thirds (6.67 days)
    (10 * DAY, 7 * DAY, True),
    (90 * DAY, 91 * DAY, True),             # expired
])
def test_lifetime_fraction(lifetime, age, due):
    decision = renewal_decision(make_cert(lifetime=lifetime), now=ISSUED + age)
    assert decision.due is due, decision


def test_lifetime_reasons_and_renew_at():
    ninety = renewal_decision(make_cert(lifetime=90 * DAY), now=ISSUED)
    assert ninety.renew_at == ISSUED + 60 * DAY and "two thirds" in ninety.reason
    six = renewal_decision(make_cert(lifetime=6 * DAY), now=ISSUED)
    assert six.renew_at == ISSUED + 3 * DAY and "half" in six.reason
    expired = renewal_decision(make_cert(lifetime=6 * DAY), now=ISSUED + 7 * DAY)
    assert expired.due and "expired" in expired.reason


def test_ari_window_in_the_past_is_due():
    cert = make_cert(lifetime=90 * DAY)
    window = {"start": ISSUED + 10 * DAY, "end": ISSUED + 12 * DAY}
    decision = renewal_decision(cert, now=ISSUED + 20 * DAY, renewal_info=window)
    assert decision.due and "ARI" in decision.reason
    assert window["start"] <= decision.renew_at <= window["end"]


def test_ari_window_in_the_future_is_not_due_and_renew_at_is_inside():
    cert = make_cert(lifetime=90 * DAY)
    window = {"start": ISSUED + 70 * DAY, "end": ISSUED + 72 * DAY}
    decision = renewal_decision(cert, now=ISSUED + 65 * DAY, renewal_info=window)  # past 2/3: ARI wins
    assert not decision.due
    assert window["start"] <= decision.renew_at <= window["end"]
    again = renewal_decision(cert, now=ISSUED + 1 * DAY, renewal_info=window)
    assert again.renew_at == decision.renew_at  # deterministic per certificate: timer runs agree


def test_ari_point_spreads_certificates_over_the_window():
    window = {"start": ISSUED + 70 * DAY, "end": ISSUED + 80 * DAY}
    points = {renewal_decision(make_cert(lifetime=90 * DAY, serial=s), now=ISSUED, renewal_info=window).renew_at
              for s in range(1, 21)}
    assert len(points) > 10


def test_ari_overrides_renew_before():
    cert = make_cert(lifetime=90 * DAY)
    window = {"start": ISSUED + 80 * DAY, "end": ISSUED + 81 * DAY}
    decision = renewal_decision(cert, now=ISSUED + 75 * DAY, renewal_info=window, renew_before=30 * DAY)
    assert not decision.due and decision.renew_at >= window["start"]


def test_renew_before_overrides_the_fraction():
    cert = make_cert(lifetime=90 * DAY)
    decision = renewal_decision(cert, now=ISSUED + 70 * DAY, renew_before=14 * DAY)
    assert not decision.due and decision.renew_at == ISSUED + 76 * DAY and "renew_before" in decision.reason
    assert renewal_decision(cert, now=ISSUED + 77 * DAY, renew_before=14 * DAY).due


def test_renew_before_longer_than_half_the_lifetime_is_clamped():
    """A fixed 30 days on a 6-day certificate would renew at every run (certbot#9261)."""
    cert = make_cert(lifetime=6 * DAY)
    decision = renewal_decision(cert, now=ISSUED + DAY, renew_before=30 * DAY)
    assert not decision.due and decision.renew_at == ISSUED + 3 * DAY and "clamped" in decision.reason


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        renewal_decision(make_cert(lifetime=90 * DAY), now=dt.datetime(2026, 3, 2))


def test_ari_cert_id_matches_rfc_9773_example():
    """RFC 9773 §4.1: AKI 69:88:5B:...:C8:D4 and serial 00:87:65:43:21 (the leading zero keeps the
    DER INTEGER positive) give aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE."""
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    cert = make_cert(lifetime=90 * DAY, serial=0x87654321, aki=aki)
    assert ari_cert_id(cert) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert ari_cert_id(cert.decode()) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_ari_cert_id_serial_without_high_bit_has_no_leading_zero():
    cert = make_cert(lifetime=90 * DAY, serial=0x7F, aki=b"\x00")
    assert ari_cert_id(cert) == "AA.fw"


def test_ari_cert_id_needs_an_authority_key_identifier():
    with pytest.raises(AcmeError, match="Authority Key Identifier"):
        ari_cert_id(make_cert(lifetime=90 * DAY, aki=None))
