"""A pebble that resolves through a DNS server reading a moto Route 53 zone at query time (no
challtestsrv): dns-01 passes only if aep-ops really wrote the TXT values into Route 53. Module
scoped: a test points the server at its own account's zone with ``route53_dns.serve(client, zone_id)``
and back to nothing after. Import both fixtures into a test module to use them."""

from __future__ import annotations

import pytest

from aep_ops.testing.pebble import start_pebble, stop_pebble
from aep_ops.testing.route53dns import Route53DnsServer


@pytest.fixture(scope="module")
def route53_dns():
    server = Route53DnsServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def route53_pebble(route53_dns):
    """A pebble that resolves every name through ``route53_dns``."""
    server = start_pebble(dns_server=route53_dns.address)
    try:
        yield server
    finally:
        stop_pebble(server)
