"""certs.check as a user runs it, against real nginx serving good and bad certificates.

Each bad site is bad in one way only, so each finding is shown to come from that fault:
expired, not yet valid, expiring within the critical or warning window, wrong name, no
intermediate sent, self-signed, RSA-1024, TLS 1.0 accepted, TLS 1.1 accepted. The TLS 1.0/1.1
sites really accept those versions (nginx at OpenSSL security level 0), so "refused" on the
good site is a server's answer, not this client's silence.
"""

from __future__ import annotations

import json

import pytest

from aep_ops.testing.nginx import Site, start_nginx, stop_nginx
from aep_ops.testing.ports import free_port
from aep_ops.testing.s3tls import SilentEndpoint
from aep_ops.testing.tlscerts import TestPki
from tests.conftest import write_config

NAME = "api.aep.test"
LEGACY_OK = "DEFAULT@SECLEVEL=0"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPki(tmp_path_factory.mktemp("certs-check-pki"))


@pytest.fixture(scope="module")
def sites(pki):
    good = pki.leaf("good", [NAME, "www.aep.test"])
    wild = pki.leaf("wild", ["*.aep.test"])
    leaf = {
        "expired": pki.leaf("expired", [NAME], starts_in_days=-100, days=10),
        "future": pki.leaf("future", [NAME], starts_in_days=2, days=90),
        "soon": pki.leaf("soon", [NAME], starts_in_days=-1, days=4),  # 3 days left: critical (< 7)
        "warning": pki.leaf("warning", [NAME], starts_in_days=-1, days=21),  # 20 days left: warning (< 30)
        "self": pki.leaf("self", [NAME], self_signed=True),
        "rsa1024": pki.leaf("rsa1024", [NAME], key="rsa1024"),
    }
    served = [Site("good", good.fullchain, good.key), Site("wild", wild.fullchain, wild.key),
              Site("nointer", good.cert, good.key),
              Site("tls10", good.fullchain, good.key, protocols="TLSv1 TLSv1.2", ciphers=LEGACY_OK),
              Site("tls11", good.fullchain, good.key, protocols="TLSv1.1 TLSv1.2", ciphers=LEGACY_OK)]
    served += [Site(name, files.fullchain, files.key, ciphers=LEGACY_OK if name == "rsa1024" else None)
               for name, files in leaf.items()]
    server = start_nginx(served)
    try:
        yield server, good
    finally:
        stop_nginx(server)


def _endpoint(server, site: str, sni: str = NAME) -> str:
    return f"127.0.0.1:{server.port(site)}@{sni}"


def _rows(proc) -> dict:
    return {row["label"]: row for row in json.loads(proc.stdout)["endpoints"]}


def _codes(row: dict) -> set:
    return {p["code"] for p in row["problems"]}


def test_each_misconfiguration_is_found_and_named(cli, sites, pki):
    server, good = sites
    expected = {
        _endpoint(server, "good"): set(),
        _endpoint(server, "good", "wrong.example.org"): {"name_mismatch"},
        _endpoint(server, "nointer"): {"chain_invalid"},
        _endpoint(server, "expired"): {"expired"},
        _endpoint(server, "future"): {"not_yet_valid"},
        _endpoint(server, "soon"): {"expires_soon"},
        _endpoint(server, "warning"): {"expires_soon"},
        _endpoint(server, "self"): {"chain_invalid"},
        _endpoint(server, "rsa1024"): {"weak_key"},
        _endpoint(server, "tls10"): {"tlsv1_accepted"},
        _endpoint(server, "tls11"): {"tlsv1_1_accepted"},
    }
    proc = cli("certs.check", "--endpoints", ",".join(expected), "--ca-file", str(pki.root_file), "--json")
    assert proc.returncode == 5, proc.stderr
    rows = _rows(proc)
    assert {label: _codes(row) for label, row in rows.items()} == expected
    ok = rows[_endpoint(server, "good")]
    assert (ok["status"], ok["serial"], ok["chain_verified"]) == ("ok", good.serial, True)
    assert ok["protocol"] == "TLSv1.3" and ok["legacy_protocols"] == {"TLSv1": "refused", "TLSv1.1": "refused"}
    assert ok["dns_names"] == [NAME, "www.aep.test"] and ok["key_type"] == "ECDSA P-256"
    assert 88 < ok["days_left"] < 90
    assert rows[_endpoint(server, "tls10")]["legacy_protocols"]["TLSv1"] == "accepted"
    assert rows[_endpoint(server, "tls11")]["legacy_protocols"] == {"TLSv1": "refused", "TLSv1.1": "accepted"}
    assert "no intermediate" in rows[_endpoint(server, "nointer")]["problems"][0]["message"]
    assert rows[_endpoint(server, "nointer")]["chain_sent"] == 1
    assert rows[_endpoint(server, "rsa1024")]["key_bits"] == 1024
    assert rows[_endpoint(server, "warning")]["status"] == "warning"
    statuses = {label: row["status"] for label, row in rows.items()}
    assert [label for label, s in statuses.items() if s == "ok"] == [_endpoint(server, "good")]


def test_text_output_names_each_problem_and_warnings_alone_exit_0(cli, sites, pki):
    server, _ = sites
    bad = cli("certs.check", "--endpoints", f"{_endpoint(server, 'good')},{_endpoint(server, 'nointer')}",
              "--ca-file", str(pki.root_file))
    assert bad.returncode == 5
    lines = bad.stdout.splitlines()
    assert lines[0].startswith("certs.check on local") and "1 critical, 0 warning, 1 ok" in lines[0]
    nointer = next(i for i, line in enumerate(lines) if line.startswith(f"critical  {_endpoint(server, 'nointer')}"))
    assert "no intermediate" in lines[nointer + 1]
    assert "Traceback" not in bad.stderr

    fine = cli("certs.check", "--endpoints", f"{_endpoint(server, 'good')},{_endpoint(server, 'warning')}",
               "--ca-file", str(pki.root_file))
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert "0 critical, 1 warning, 1 ok" in fine.stdout.splitlines()[0]
    assert "warning: expires in 20 days" in fine.stdout


def test_a_hung_endpoint_is_reported_and_does_not_hold_the_others(cli, sites, pki):
    """50 endpoints, one that accepts TCP and never answers. The silent endpoint is never
    released while the command runs: the command returning at all proves the others were not
    held by it (the time it takes is measured in bench/certs.py, not here)."""
    server, _ = sites
    silent = SilentEndpoint()
    try:
        endpoints = [_endpoint(server, "wild", f"h{i}.aep.test") for i in range(49)]
        endpoints.insert(17, f"127.0.0.1:{silent.port}@{NAME}")
        proc = cli("certs.check", "--endpoints", ",".join(endpoints), "--ca-file", str(pki.root_file), "--json",
                   "--set", "certs.timeout=2", "--set", "certs.parallel=8", timeout=60)
        assert silent.accepted >= 1  # it was really asked, and held the connection
    finally:
        silent.close()
    assert proc.returncode == 5
    rows = _rows(proc)
    assert len(rows) == 50
    hung = rows[f"127.0.0.1:{silent.port}@{NAME}"]
    assert hung["status"] == "critical" and hung["problems"][0]["message"] == "no answer within 2s"
    assert all(row["status"] == "ok" for label, row in rows.items() if label != hung["label"])


def test_every_host_of_an_nginx_role_is_checked_by_its_own_address(cli, pki, tmp_path, monkeypatch, state_dir):
    """Two hosts behind one name: h02 still serves the expired certificate. Checking the name
    through a load balancer could miss it; checking each host by its address does not."""
    fresh = pki.leaf("role-fresh", [NAME])
    stale = pki.leaf("role-stale", [NAME], starts_in_days=-100, days=10)
    port = free_port()
    server = start_nginx([Site("h01", fresh.fullchain, fresh.key, port=port, address="127.0.0.1"),
                          Site("h02", stale.fullchain, stale.key, port=port, address="127.0.0.2")])
    try:
        write_config(tmp_path / "aep-ops.yaml", f"""
environments:
  staging:
    production: false
    backend: local
    hosts:
      - {{name: h01, address: 127.0.0.1, role: web}}
      - {{name: h02, address: 127.0.0.2, role: web}}
      - {{name: db1, address: 127.0.0.3, role: db}}
    certs: {{ca_file: {pki.root_file}}}
    certificates:
      - name: api
        domains: [{NAME}]
        nginx: {{role: web, port: {port}}}
""", monkeypatch)
        proc = cli("certs.check", "--env", "staging", "--json")
    finally:
        stop_nginx(server)
    assert proc.returncode == 5, proc.stderr
    rows = {row["host"]: row for row in json.loads(proc.stdout)["endpoints"]}
    assert set(rows) == {"h01", "h02"}  # the db role serves no certificate
    assert (rows["h01"]["status"], rows["h01"]["serial"]) == ("ok", fresh.serial)
    assert (_codes(rows["h02"]), rows["h02"]["serial"]) == ({"expired"}, stale.serial)
    assert rows["h02"]["label"] == f"127.0.0.2:{port}@{NAME}" and rows["h02"]["certificate"] == "api"

    metrics = (state_dir / "metrics" / "aep_ops_certs_staging.prom").read_text()
    h01 = f'env="staging",certificate="api",endpoint="127.0.0.1:{port}@{NAME}",host="h01"'
    h02 = f'env="staging",certificate="api",endpoint="127.0.0.2:{port}@{NAME}",host="h02"'
    assert f"aep_ops_cert_check_ok{{{h01}}} 1" in metrics and f"aep_ops_cert_check_ok{{{h02}}} 0" in metrics
    expiry = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
              for line in metrics.splitlines() if line.startswith("aep_ops_cert_expiry_seconds{")}
    assert expiry[h01] > 88 * 86400 and expiry[h02] < -89 * 86400
    assert 'aep_ops_certs_check_last_run_timestamp_seconds{env="staging"}' in metrics


def test_acm_certificates_status_expiry_and_use(cli, pki, tmp_path, monkeypatch, moto_account):
    acm = moto_account.client("acm")
    fresh = pki.leaf("acm-fresh", [NAME])
    stale = pki.leaf("acm-stale", [NAME], starts_in_days=-1, days=4)  # ACM refuses an expired import
    arns = {files.name: acm.import_certificate(Certificate=files.cert.read_bytes(), PrivateKey=files.key.read_bytes(),
                                               CertificateChain=pki.intermediate_file.read_bytes())["CertificateArn"]
            for files in (fresh, stale)}
    write_config(tmp_path / "aep-ops.yaml", f"""
environments:
  staging:
    production: false
    backend: local
    aws: {moto_account.aws_yaml}
    certificates:
      - {{name: api, domains: [{NAME}], acm: {{certificate_arn: "{arns['acm-fresh']}"}}}}
      - {{name: old, domains: [{NAME}], acm: {{certificate_arn: "{arns['acm-stale']}"}}}}
      - {{name: gone, domains: [{NAME}], acm: {{certificate_arn: "{arns['acm-fresh'][:-4]}dead"}}}}
""", monkeypatch)
    proc = cli("certs.check", "--env", "staging", "--json", env=moto_account.environ)
    assert proc.returncode == 5, proc.stderr
    rows = {row["certificate"]: row for row in json.loads(proc.stdout)["acm"]}
    assert rows["api"]["acm_status"] == "ISSUED" and rows["api"]["status"] == "warning"
    assert _codes(rows["api"]) == {"acm_unused"} and 88 < rows["api"]["days_left"] < 90
    assert rows["old"]["status"] == "critical" and _codes(rows["old"]) == {"expires_soon", "acm_unused"}
    assert rows["gone"]["status"] == "critical" and _codes(rows["gone"]) == {"acm_unreadable"}


@pytest.mark.parametrize("args, says", [
    (["--endpoints", ""], "--endpoints is empty"),
    (["--endpoints", " , "], "--endpoints is empty"),
    (["--endpoints", "-oProxyCommand=x"], "is not HOST[:PORT][@SNI]"),
    (["--endpoints", "api.aep.test:70000"], "port 70000 is out of range"),
    (["--endpoints", "api.aep.test@10.0.0.1"], "is not a DNS name"),
    (["--endpoints", "api.aep.test", "--ca-file", "/nonexistent/root.pem"], "no such file"),
    (["--endpoints", "api.aep.test", "--ca-file", ""], "--ca-file is empty"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_probed(cli, args, says):
    proc = cli("certs.check", *args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_ca_file_that_is_not_pem_is_refused(cli, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    proc = cli("certs.check", "--endpoints", "api.aep.test", "--ca-file", str(junk))
    assert proc.returncode == 2 and "holds no usable PEM certificate" in proc.stderr


def test_nothing_configured_is_said_and_exit_0(cli):
    proc = cli("certs.check")
    assert proc.returncode == 0, proc.stderr
    assert "no TLS endpoints configured for local" in proc.stdout + proc.stderr
