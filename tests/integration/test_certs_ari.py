"""ARI (RFC 9773) for certs.renew's due-gate: the window comes from the CA when its directory
offers ``renewalInfo`` (here the shim in front of pebble 2.4, which has none), else None."""

from __future__ import annotations

import datetime as dt

import pytest

from aep_ops.certs.acme_issue import AcmeError, issue
from aep_ops.certs.due import ari_cert_id, fetch_renewal_info, renewal_decision
from aep_ops.testing.ports import free_port


class TxtChallenge:
    kind = "dns-01"

    def __init__(self, server) -> None:
        self.server = server

    def present(self, domain: str, name: str, value: str) -> None:
        self.server.set_txt(name, value)

    def cleanup(self, domain: str, name: str, value: str) -> None:
        self.server.clear_txt(name)


@pytest.fixture(scope="module")
def issued(pebble, tmp_path_factory):  # noqa: F811
    account_key = tmp_path_factory.mktemp("ari") / "account.pem"
    return issue(pebble.directory_url, account_key_path=account_key, ca_bundle=pebble.ca_file, contact=None,
                 domains=["ari.aep.test"], key_type="ecdsa-p256", challenge=TxtChallenge(pebble), timeout=60)


@pytest.fixture
def shim(ari_shim):  # noqa: F811
    ari_shim.clear_windows()
    yield ari_shim
    ari_shim.clear_windows()


def test_window_through_the_ari_shim(shim, issued):
    start = dt.datetime(2026, 5, 1, 0, 0, tzinfo=dt.timezone.utc)
    end = start + dt.timedelta(days=2)
    shim.set_window(start, end, cert_id=ari_cert_id(issued.cert_pem), retry_after=3600)

    info = fetch_renewal_info(shim.directory_url, issued.cert_pem, ca_bundle=shim.ca_file, timeout=10)

    assert info is not None
    assert info["start"] == start and info["end"] == end and info["start"].tzinfo is not None
    assert info["retry_after"] == 3600
    assert shim.requested[-1] == ari_cert_id(issued.cert_pem)
    before = renewal_decision(issued.cert_pem, now=start - dt.timedelta(days=1), renewal_info=info)
    assert not before.due and start <= before.renew_at <= end
    assert renewal_decision(issued.cert_pem, now=end + dt.timedelta(seconds=1), renewal_info=info).due


def test_unknown_certificate_gets_none(shim, issued):
    shim.set_window(dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc), dt.datetime(2026, 5, 2, tzinfo=dt.timezone.utc),
                    cert_id="not-this-certificate")
    assert fetch_renewal_info(shim.directory_url, issued.cert_pem, ca_bundle=shim.ca_file, timeout=10) is None


def test_pebble_without_ari_gives_none(pebble, issued):  # noqa: F811
    assert fetch_renewal_info(pebble.directory_url, issued.cert_pem, ca_bundle=pebble.ca_file, timeout=10) is None


def test_directory_down_is_an_acme_error(issued):
    url = f"https://127.0.0.1:{free_port()}/dir"
    with pytest.raises(AcmeError) as raised:
        fetch_renewal_info(url, issued.cert_pem, ca_bundle=None, timeout=5)
    assert str(raised.value) == (f"ACME directory {url} unreachable: connection refused;"
                                 f" check acme.directory and that the CA is up")
