"""dns-01 through Route 53 (certs.renew's Route53Challenge) against a real pebble and a real moto
server: pebble resolves through a DNS server that reads the moto hosted zone at query time, so a
certificate is issued only if aep-ops really wrote the TXT values into Route 53."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from cryptography import x509

from aep_ops.certs.acme_issue import AcmeError, issue
from aep_ops.certs.route53 import Route53Challenge, quoted
from aep_ops.base.errors import AepError, ConfigError
from aep_ops.testing.route53dns import HOST, Route53DnsServer
from tests.support.route53_pebble import route53_dns, route53_pebble  # noqa: F401 (fixtures)

CHALLENGE_NAME = "_acme-challenge.aep.test"
FOREIGN_VALUE = '"google-site-verification=aep-ops-test"'


@dataclass
class Zone:
    """The hosted zone ``aep.test.`` in this test's own moto account."""

    route53: Any
    zone_id: str  # as the API returns it: /hostedzone/ID
    aws: dict

    def txt(self, name: str = CHALLENGE_NAME) -> tuple[int, set[str]] | None:
        """(TTL, values) of the TXT record set ``name``, read straight from Route 53."""
        for record in self.record_sets():
            if record["Name"] == f"{name}." and record["Type"] == "TXT":
                return record["TTL"], {r["Value"] for r in record["ResourceRecords"]}
        return None

    def record_sets(self) -> list[dict]:
        pages = self.route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=self.zone_id)
        return [record for page in pages for record in page["ResourceRecordSets"]]


class RecordingChallenge:
    """Route53Challenge, plus what the zone and pebble's DNS held right after each present."""

    kind = "dns-01"

    def __init__(self, inner: Route53Challenge, zone: Zone, dns_server: Route53DnsServer) -> None:
        self.inner, self.zone, self.dns_server = inner, zone, dns_server
        self.values: list[str] = []
        self.after_present: list[tuple[int, set[str]] | None] = []
        self.served_after_present: list[set[str]] = []
        self.cleaned: list[str] = []

    def present(self, domain: str, name: str, value: str) -> None:
        self.inner.present(domain, name, value)
        self.values.append(value)
        self.after_present.append(self.zone.txt(name))
        self.served_after_present.append(served_txt(self.dns_server, name))

    def cleanup(self, domain: str, name: str, value: str) -> None:
        self.inner.cleanup(domain, name, value)
        self.cleaned.append(domain)


@pytest.fixture
def zone(moto_account, route53_dns, monkeypatch) -> Zone:
    """``aep.test.`` in this test's moto account, served by ``route53_dns``; the product code's
    clients find the account's credentials in the environment, as on an ops host."""
    route53 = moto_account.client("route53")
    created = route53.create_hosted_zone(Name="aep.test.", CallerReference=str(uuid.uuid4()))
    zone_id = created["HostedZone"]["Id"]
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    moto_account.use_in(monkeypatch)
    route53_dns.serve(route53, zone_id)
    try:
        yield Zone(route53, zone_id, {"region": moto_account.region, "endpoint_url": moto_account.endpoint_url})
    finally:
        route53_dns.serve(None, None)


def served_txt(server: Route53DnsServer, name: str) -> set[str]:
    """The TXT strings the test DNS server (pebble's resolver) answers for ``name`` now."""
    answer = dns.query.udp(dns.message.make_query(f"{name}.", "TXT"), HOST, port=server.port, timeout=5)
    assert answer.rcode() == dns.rcode.NOERROR
    return {rdata.to_text() for rrset in answer.answer for rdata in rrset}


def issue_with(server, tmp_path, domains, challenge):
    return issue(server.directory_url, account_key_path=tmp_path / "account.pem", ca_bundle=server.ca_file,
                 contact="ops@aep.example.org", domains=domains, key_type="ecdsa-p256", challenge=challenge,
                 timeout=60)


def sans(cert_pem: str) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def test_wildcard_and_apex_share_one_record_set_and_it_is_gone_after(route53_pebble, route53_dns, zone, tmp_path):
    progress: list[str] = []
    challenge = RecordingChallenge(Route53Challenge(zone.aws, zone.zone_id, on_progress=progress.append),
                                   zone, route53_dns)

    issued = issue_with(route53_pebble, tmp_path, ["*.aep.test", "aep.test"], challenge)

    assert sans(issued.cert_pem) == {"*.aep.test", "aep.test"}
    assert len(challenge.values) == 2 and challenge.values[0] != challenge.values[1]
    both = {quoted(value) for value in challenge.values}
    assert challenge.after_present == [(10, {quoted(challenge.values[0])}), (10, both)]
    assert challenge.served_after_present[-1] == both  # what pebble resolved during validation
    assert sorted(challenge.cleaned) == ["*.aep.test", "aep.test"]
    assert zone.txt() is None
    assert served_txt(route53_dns, CHALLENGE_NAME) == set()
    assert any("INSYNC" in line for line in progress)


def test_a_foreign_value_survives_present_and_cleanup(route53_pebble, route53_dns, zone, tmp_path):
    zone.route53.change_resource_record_sets(HostedZoneId=zone.zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {"Name": CHALLENGE_NAME, "Type": "TXT", "TTL": 300,
                                                   "ResourceRecords": [{"Value": FOREIGN_VALUE}]}}]})
    before = zone.record_sets()
    bare_id = zone.zone_id.rsplit("/", 1)[-1]
    challenge = RecordingChallenge(Route53Challenge(zone.aws, bare_id), zone, route53_dns)

    issued = issue_with(route53_pebble, tmp_path, ["aep.test"], challenge)

    assert sans(issued.cert_pem) == {"aep.test"}
    assert challenge.after_present == [(300, {FOREIGN_VALUE, quoted(challenge.values[0])})]
    assert challenge.served_after_present == [{FOREIGN_VALUE, quoted(challenge.values[0])}]
    assert zone.txt() == (300, {FOREIGN_VALUE})
    assert zone.record_sets() == before


def test_validation_reads_route53_so_a_wrong_value_fails(route53_pebble, zone, tmp_path):
    """The proof that pebble resolves through the zone: a value Route 53 does not hold fails."""

    class WrongValue(Route53Challenge):
        def present(self, domain: str, name: str, value: str) -> None:
            super().present(domain, name, "not-" + value)

        def cleanup(self, domain: str, name: str, value: str) -> None:
            super().cleanup(domain, name, "not-" + value)

    with pytest.raises(AcmeError) as failed:
        issue_with(route53_pebble, tmp_path, ["aep.test"], WrongValue(zone.aws, zone.zone_id))

    assert "unauthorized" in str(failed.value) and "dns-01" in str(failed.value) and "\n" not in str(failed.value)
    assert zone.txt() is None  # cleaned up after the failure too


@pytest.mark.parametrize("name", ["_acme-challenge.aep.example", "_acme-challenge.notaep.test"])
def test_a_name_outside_the_zone_is_refused_before_any_change(zone, name):
    before = zone.record_sets()
    challenge = Route53Challenge(zone.aws, zone.zone_id)
    bare_id = zone.zone_id.rsplit("/", 1)[-1]

    for call in (challenge.present, challenge.cleanup):
        with pytest.raises(ConfigError) as refused:
            call(name.removeprefix("_acme-challenge."), name, "value-that-must-not-land")
        message = str(refused.value)
        assert "\n" not in message and bare_id in message and name in message

    assert zone.record_sets() == before


def test_a_missing_zone_is_one_line_naming_it(zone):
    challenge = Route53Challenge(zone.aws, "/hostedzone/Z0NOSUCHZONE42")

    with pytest.raises(AepError) as missing:
        challenge.present("aep.test", CHALLENGE_NAME, "value")

    message = str(missing.value)
    assert "\n" not in message and "Z0NOSUCHZONE42" in message and "not found" in message


def test_the_test_dns_server_answers_a_aaaa_and_tcp(route53_dns, zone):
    a_query = dns.message.make_query("anything.example.", "A")
    for answer in (dns.query.udp(a_query, HOST, port=route53_dns.port, timeout=5),
                   dns.query.tcp(a_query, HOST, port=route53_dns.port, timeout=5)):
        assert [rrset.to_text().split()[-1] for rrset in answer.answer] == [HOST]
    aaaa = dns.query.udp(dns.message.make_query("anything.example.", "AAAA"), HOST, port=route53_dns.port,
                         timeout=5)
    assert aaaa.rcode() == dns.rcode.NOERROR and aaaa.answer == []
    assert served_txt(route53_dns, CHALLENGE_NAME) == set()


def test_the_test_dns_server_fails_loudly_without_a_zone(route53_dns):
    answer = dns.query.udp(dns.message.make_query(f"{CHALLENGE_NAME}.", "TXT"), HOST, port=route53_dns.port,
                           timeout=5)
    assert answer.rcode() == dns.rcode.SERVFAIL
