"""certs.renew with dns-01 as a user runs it: the TXT records go into Route 53 (the moto server,
in this test's own account) and pebble validates them through a DNS server that reads that zone
at query time, so the certificate is issued only if aep-ops really wrote them; then the
certificate is deployed to real nginx hosts. The apex and the wildcard share one TXT name."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography import x509

from aep_ops.testing.tlscerts import TestPki
from tests.support.cert_fleet import NAME, start_cert_fleet, write_fleet_config
from tests.support.route53_pebble import route53_dns, route53_pebble  # noqa: F401 (fixtures)


def test_dns01_renewal_through_route53_then_deployed(cli, route53_dns, route53_pebble, moto_account,
                                                     ssh_host_factory, tmp_path, monkeypatch, state_dir):
    route53 = moto_account.client("route53")
    zone_id = route53.create_hosted_zone(Name="aep.test.", CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    route53_dns.serve(route53, zone_id)
    moto_account.use_in(monkeypatch)
    first = TestPki(tmp_path / "pki").leaf("first", [NAME])
    fleet = start_cert_fleet(2, ssh_host_factory, first)
    try:
        certificate = fleet.certificate(validation="dns-01", domains=("aep.test", "*.aep.test"), zone_id=zone_id)
        text = fleet.config(identity=ssh_host_factory.identity, known_hosts=ssh_host_factory.known_hosts,
                            certificate=certificate,
                            acme=f"    acme: {{directory: '{route53_pebble.directory_url}',"
                                 f" ca_bundle: {route53_pebble.ca_file}}}\n"
                                 f"    aws: {moto_account.aws_yaml}\n")
        write_fleet_config(tmp_path, monkeypatch, text)
        proc = cli("certs.renew", "--env", "staging", "--json", timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        serial = json.loads(proc.stdout)["outputs"]["ensure_issued"]["issued"][0]["serial"]
        assert fleet.served() == {"h01": serial, "h02": serial}
        version = state_dir / "certs" / "staging" / "api" / "versions" / "0001"
        leaf = x509.load_pem_x509_certificate((version / "cert.pem").read_bytes())
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(names.get_values_for_type(x509.DNSName)) == ["*.aep.test", "aep.test"]
        records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        assert [r for r in records if r["Type"] == "TXT"] == []  # our values removed after
    finally:
        route53_dns.serve(None, None)
        fleet.stop()
