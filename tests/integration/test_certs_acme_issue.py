"""ACME issuance (the core of certs.renew) against a real pebble: http-01 through a real webroot
server, dns-01 through challtestsrv, RSA keys, badNonce retries, and the errors an on-call
engineer sees when the CA is down or validation fails."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import os
import stat
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.message
import dns.query
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store

from aep_ops.certs.acme_issue import AcmeError, is_staging_directory, issue
from aep_ops.certs.keys import key_description, key_matches_cert
from aep_ops.testing.pebble import start_pebble, stop_pebble
from aep_ops.testing.ports import free_port

CONTACT = "ops@aep.example.org"


class WebrootChallenge:
    """http-01 as the runbook will do it: the token file under the webroot, removed after."""

    kind = "http-01"

    def __init__(self, webroot: Path) -> None:
        self.webroot = webroot
        self.presented: list[str] = []
        self.cleaned: list[str] = []

    def present(self, domain: str, name: str, value: str) -> None:
        path = self.webroot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value)
        self.presented.append(domain)

    def cleanup(self, domain: str, name: str, value: str) -> None:
        (self.webroot / name).unlink()
        self.cleaned.append(domain)


class TxtChallenge:
    """dns-01 through challtestsrv's management API (Route 53 later)."""

    kind = "dns-01"

    def __init__(self, server) -> None:
        self.server = server
        self.presented: list[str] = []
        self.cleaned: list[str] = []

    def present(self, domain: str, name: str, value: str) -> None:
        self.server.set_txt(name, value)
        self.presented.append(domain)

    def cleanup(self, domain: str, name: str, value: str) -> None:
        self.server.clear_txt(name)
        self.cleaned.append(domain)


class Webroot:
    """A stdlib HTTP server on 127.0.0.1:HTTP_PORT (where pebble validates http-01) serving ``root``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture(scope="module")
def webroot(pebble, tmp_path_factory):  # noqa: F811
    server = Webroot(tmp_path_factory.mktemp("webroot"), pebble.http_port)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def nonce_pebble():
    """A pebble that rejects 40 % of good nonces (the default pebble rejects none)."""
    server = start_pebble(nonce_reject=40)
    try:
        yield server
    finally:
        stop_pebble(server)


def issue_with(server, account_key: Path, domains, challenge, key_type="ecdsa-p256", **kwargs):
    return issue(server.directory_url, account_key_path=account_key, ca_bundle=server.ca_file, contact=CONTACT,
                 domains=domains, key_type=key_type, challenge=challenge, timeout=60, **kwargs)


def sans(cert_pem: str) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    return set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName))


def assert_chain_verifies(server, issued, name: str) -> None:
    roots = [x509.load_pem_x509_certificate(pem.encode()) for pem in server.roots()]
    leaf = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    intermediates = x509.load_pem_x509_certificates(issued.chain_pem.encode())
    verifier = (PolicyBuilder().store(Store(roots)).time(dt.datetime.now(dt.timezone.utc))
                .build_server_verifier(x509.DNSName(name)))
    chain = verifier.verify(leaf, intermediates)
    assert chain[-1] == roots[0]


def assert_no_key_material(message: str, *key_paths: Path) -> None:
    """No PEM marker and no encoding of the key's secret numbers in ``message``: base64/base64url at
    each of the three byte alignments (so a PEM or DER body is caught wherever the secret sits in
    it; JWK "d" too) and hex. Not the PEM lines themselves: PKCS#8 also carries the public key,
    which is rightly in the CSR and the certificate."""
    assert "PRIVATE KEY" not in message
    for path in key_paths:
        if path.exists():
            for form in secret_forms(path):
                assert form not in message


def secret_forms(path: Path) -> list[str]:
    numbers = serialization.load_pem_private_key(path.read_bytes(), password=None).private_numbers()
    secrets = [numbers.private_value] if hasattr(numbers, "private_value") else [numbers.d, numbers.p, numbers.q]
    forms = []
    for value in secrets:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        forms.append(raw.hex()[:32])
        for shift in range(3):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                forms.append(encode(b"\0" * shift + raw).decode()[4:28])
    return forms


def log_text(state_dir: Path) -> str:
    path = state_dir / "logs" / "aep-ops.jsonl"
    return path.read_text() if path.exists() else ""


def _written(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_http01_issues_for_two_names_and_reuses_the_account(pebble, webroot, tmp_path, state_dir):  # noqa: F811
    account_key = tmp_path / "acme" / "account.pem"
    challenge = WebrootChallenge(webroot.root)
    progress: list[str] = []
    issued = issue_with(pebble, account_key, ["aep.test", "www.aep.test"], challenge, on_progress=progress.append)

    assert sans(issued.cert_pem) == {"aep.test", "www.aep.test"}
    assert_chain_verifies(pebble, issued, "www.aep.test")
    assert issued.fullchain_pem == issued.cert_pem + issued.chain_pem
    assert key_matches_cert(issued.key_pem, issued.cert_pem)
    assert key_description(serialization.load_pem_private_key(issued.key_pem.encode(), None).public_key()) \
        == "ECDSA P-256"
    leaf = x509.load_pem_x509_certificate(issued.cert_pem.encode())
    assert issued.serial == f"{leaf.serial_number:x}" and issued.issuer.startswith("CN=Pebble")
    assert issued.not_before.tzinfo is not None and issued.not_before < issued.not_after
    assert stat.S_IMODE(os.stat(account_key).st_mode) == 0o600
    assert sorted(challenge.presented) == sorted(challenge.cleaned) == ["aep.test", "www.aep.test"]
    assert list((webroot.root / ".well-known" / "acme-challenge").iterdir()) == []
    assert any("issued serial" in line for line in progress)
    assert "PRIVATE KEY" not in repr(issued)
    assert_no_key_material(log_text(state_dir), account_key)  # the debug log (acme's JWS included)
    assert_no_key_material(log_text(state_dir) + repr(issued), _written(tmp_path / "leaf.pem", issued.key_pem))

    key_before = account_key.read_bytes()
    again = issue_with(pebble, account_key, ["aep.test"], WebrootChallenge(webroot.root))
    assert again.account_url == issued.account_url
    assert account_key.read_bytes() == key_before
    assert again.serial != issued.serial and not key_matches_cert(issued.key_pem, again.cert_pem)


def test_dns01_issues_a_wildcard_and_its_apex(pebble, tmp_path):  # noqa: F811
    challenge = TxtChallenge(pebble)
    issued = issue_with(pebble, tmp_path / "account.pem", ["*.aep.test", "aep.test"], challenge)

    assert sans(issued.cert_pem) == {"*.aep.test", "aep.test"}
    assert_chain_verifies(pebble, issued, "api.aep.test")
    assert sorted(challenge.presented) == sorted(challenge.cleaned) == ["*.aep.test", "aep.test"]
    answer = dns.query.udp(dns.message.make_query("_acme-challenge.aep.test.", "TXT"), "127.0.0.1",
                           port=pebble.dns_port, timeout=5)
    assert answer.answer == []  # the TXT records are gone


def test_rsa_2048_key(pebble, webroot, tmp_path):  # noqa: F811
    issued = issue_with(pebble, tmp_path / "account.pem", ["rsa.aep.test"], WebrootChallenge(webroot.root),
                        key_type="rsa-2048")
    public = x509.load_pem_x509_certificate(issued.cert_pem.encode()).public_key()
    assert key_description(public) == "RSA 2048"
    assert key_matches_cert(issued.key_pem, issued.fullchain_pem)
    assert_chain_verifies(pebble, issued, "rsa.aep.test")


def test_rejected_nonces_are_retried(nonce_pebble, tmp_path, state_dir):
    for round_ in range(2):
        issued = issue_with(nonce_pebble, tmp_path / "account.pem", [f"n{round_}.aep.test"],
                            TxtChallenge(nonce_pebble))
        assert sans(issued.cert_pem) == {f"n{round_}.aep.test"}
    assert "certs.acme.bad_nonce" in log_text(state_dir)  # rejections happened (~30 POSTs at 40 %)


def test_exhausted_nonce_retries_are_a_clear_error(tmp_path):
    server = start_pebble(nonce_reject=100)
    try:
        with pytest.raises(AcmeError) as raised:
            issue_with(server, tmp_path / "account.pem", ["aep.test"], TxtChallenge(server), nonce_attempts=3)
    finally:
        stop_pebble(server)
    message = str(raised.value)
    assert "badNonce" in message and "3 fresh nonces" in message and server.directory_url in message
    assert "\n" not in message
    assert_no_key_material(message, tmp_path / "account.pem")


def test_ca_down_is_one_line_naming_the_directory(tmp_path):
    url = f"https://127.0.0.1:{free_port()}/dir"  # reserved for this process, nothing listens there
    challenge = TxtChallenge(None)
    with pytest.raises(AcmeError) as raised:
        issue(url, account_key_path=tmp_path / "account.pem", ca_bundle=None, contact=CONTACT,
              domains=["aep.test"], key_type="ecdsa-p256", challenge=challenge, timeout=10)
    message = str(raised.value)
    assert message == (f"ACME directory {url} unreachable: connection refused;"
                       f" check acme.directory and that the CA is up")
    assert "Traceback" not in message and challenge.presented == []
    assert_no_key_material(message, tmp_path / "account.pem")


def test_failed_validation_names_domain_and_challenge_and_still_cleans_up(pebble, webroot, tmp_path):  # noqa: F811
    unserved = tmp_path / "not-the-webroot"  # the token lands where the HTTP server does not look
    challenge = WebrootChallenge(unserved)
    with pytest.raises(AcmeError) as raised:
        issue_with(pebble, tmp_path / "account.pem", ["fail.aep.test"], challenge)
    message = str(raised.value)
    assert message.startswith("ACME order for fail.aep.test failed: urn:ietf:params:acme:error:")
    assert "(http-01 on fail.aep.test)" in message and "\n" not in message
    assert challenge.cleaned == challenge.presented == ["fail.aep.test"]
    assert list((unserved / ".well-known" / "acme-challenge").iterdir()) == []
    assert_no_key_material(message, tmp_path / "account.pem")


def test_account_key_readable_by_others_is_refused(pebble, tmp_path):  # noqa: F811
    key_path = tmp_path / "account.pem"
    issue_with(pebble, key_path, ["mode.aep.test"], TxtChallenge(pebble))
    key_path.chmod(0o644)
    with pytest.raises(AcmeError) as raised:
        issue_with(pebble, key_path, ["mode.aep.test"], TxtChallenge(pebble))
    assert str(raised.value).endswith(f"chmod 600 {key_path}")
    assert_no_key_material(str(raised.value), key_path)


def test_staging_predicate():
    assert is_staging_directory("https://acme-staging-v02.api.letsencrypt.org/directory")
    assert is_staging_directory("https://127.0.0.1:14000/dir")
    assert is_staging_directory("https://localhost:14000/dir")
    assert not is_staging_directory("https://acme-v02.api.letsencrypt.org/directory")
