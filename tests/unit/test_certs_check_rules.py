"""certs.check's pure rules: endpoint specs, name matching (RFC 6125), the legacy ClientHello
proof, and the metrics text."""

from __future__ import annotations

import pytest

from aep_ops.certs.endpoints import Endpoint, parse_endpoint, probe_name
from aep_ops.certs.findings import name_covered
from aep_ops.certs.metrics import render
from aep_ops.certs.probe import legacy_offer_problem
from aep_ops.base.errors import UsageError


@pytest.mark.parametrize("spec, expected", [
    ("api.example.org", Endpoint("api.example.org", 443, "api.example.org")),
    ("API.Example.org:8443", Endpoint("API.Example.org", 8443, "api.example.org")),
    ("10.0.1.5", Endpoint("10.0.1.5", 443, None)),
    ("10.0.1.5:8443@api.example.org", Endpoint("10.0.1.5", 8443, "api.example.org")),
    ("[2001:db8::1]:443@api.example.org", Endpoint("2001:db8::1", 443, "api.example.org")),
    ("[::1]", Endpoint("::1", 443, None)),
])
def test_endpoint_specs(spec, expected):
    assert parse_endpoint(spec) == expected


@pytest.mark.parametrize("spec", ["", "-x", "a b", "*.example.org", "host:", "host:0", "host:65536", "[zz::1]:443",
                                  "host@", "host@*.example.org", "host@10.0.0.1", "host;rm -rf /", "ho$t", "h\nx"])
def test_bad_endpoint_specs(spec):
    with pytest.raises(UsageError):
        parse_endpoint(spec)


def test_probe_name_of_a_wildcard_only_certificate_is_a_name_it_covers():
    assert probe_name({"domains": ["*.aep.test", "aep.test"]}) == "aep.test"
    assert probe_name({"domains": ["*.aep.test"]}) == "www.aep.test"
    assert name_covered("www.aep.test", ["*.aep.test"], [])


@pytest.mark.parametrize("name, dns, ips, covered", [
    ("api.aep.test", ["api.aep.test"], [], True),
    ("API.aep.test.", ["api.aep.test"], [], True),
    ("a.api.aep.test", ["*.aep.test"], [], False),  # a wildcard covers one label only
    ("aep.test", ["*.aep.test"], [], False),  # nor the apex
    ("x.aep.test", ["*.aep.test"], [], True),
    ("x.aep.test", ["x*.aep.test"], [], False),  # partial-label wildcards are not honoured
    ("10.0.0.1", ["10.0.0.1"], [], False),  # an address only matches IP entries
    ("10.0.0.1", [], ["10.0.0.1"], True),
    ("::1", [], ["0:0:0:0:0:0:0:1"], True),
    ("api.aep.test", [], [], False),  # no SAN: no fall-back to the CN
])
def test_name_matching(name, dns, ips, covered):
    assert name_covered(name, dns, ips) is covered


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1"])
def test_this_machine_really_offers_the_legacy_versions(version):
    """Without this, every "refused" of the legacy probes would prove nothing (OpenSSL 3 sends
    no TLS 1.0 hello at its default security level): the e2e test's accepting servers rely on it."""
    assert legacy_offer_problem(version) is None


def test_metrics_escape_label_values_and_keep_one_family_header():
    rows = [{"label": 'a"b\\c', "certificate": "api", "host": "h\n1", "status": "ok", "seconds_left": 10.0},
            {"label": "x:443", "certificate": None, "host": None, "status": "critical", "seconds_left": None}]
    text = render("prod", rows, [], now=1000.0)
    assert 'endpoint="a\\"b\\\\c"' in text and 'host="h\\n1"' in text
    assert text.count("# TYPE aep_ops_cert_check_ok gauge") == 1
    assert 'aep_ops_cert_check_ok{env="prod",certificate="",endpoint="x:443",host=""} 0' in text
    assert "aep_ops_acm_cert_expiry_seconds" not in text  # no empty family
