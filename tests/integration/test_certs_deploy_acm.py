"""Deploying a stored certificate version to ACM (aep_ops.certs.deploy_acm) against a real moto
server: a re-import under the same ARN that an ALB listener keeps serving, the refusals moto would
not make itself (a key that is not the certificate's, a changed key type), CloudFront's us-east-1,
and the private key kept out of every message, log and audit record."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from aep_ops.certs import store
from aep_ops.certs.acm import CLOUDFRONT_REGION
from aep_ops.certs.deploy_acm import AcmImportRefused, acm_plan, deploy_to_acm, normalize_serial
from aep_ops.config.settings import load
from aep_ops.base.errors import StepFailed, VerificationFailed
from aep_ops.testing.tlscerts import LeafFiles, TestPki
from tests.conftest import write_config

NAME = "api.aep.test"


@pytest.fixture
def pki(tmp_path):
    return TestPki(tmp_path / "pki")


@pytest.fixture
def settings(tmp_path, monkeypatch, moto_account):
    """The staging environment in this test's own moto account (region eu-west-1)."""
    moto_account.use_in(monkeypatch)
    write_config(tmp_path / "aep-ops.yaml", f"""
environments:
  staging:
    production: false
    backend: local
    aws: {moto_account.aws_yaml}
""", monkeypatch)
    return load("staging")


def _import(moto, pki: TestPki, leaf: LeafFiles, region: str | None = None) -> str:
    acm = moto.client("acm", **({"region_name": region} if region else {}))
    return acm.import_certificate(Certificate=leaf.cert.read_bytes(), PrivateKey=leaf.key.read_bytes(),
                                  CertificateChain=pki.intermediate_file.read_bytes())["CertificateArn"]


def _serial(moto, arn: str, region: str | None = None) -> str | None:
    acm = moto.client("acm", **({"region_name": region} if region else {}))
    return normalize_serial(acm.describe_certificate(CertificateArn=arn)["Certificate"]["Serial"])


def _store(settings, pki: TestPki, name: str, leaf: LeafFiles, *, key_type: str = "ecdsa-p256",
           key_from: LeafFiles | None = None) -> store.Version:
    """Save ``leaf`` as the newest version of lineage ``name`` (with another leaf's key if asked)."""
    from cryptography import x509

    parsed = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    chain = pki.intermediate_file.read_text()
    return store.save(settings, name, key_pem=(key_from or leaf).key.read_text(), cert_pem=leaf.cert.read_text(),
                      chain_pem=chain, fullchain_pem=leaf.fullchain.read_text(), serial=leaf.serial,
                      not_before=parsed.not_valid_before_utc, not_after=parsed.not_valid_after_utc,
                      issuer=parsed.issuer.rfc4514_string(), domains=[NAME], key_type=key_type,
                      directory="https://acme.aep.test/directory", staging=False, now=datetime.now(timezone.utc))


def _alb_listener(moto, certificate_arn: str) -> str:
    """An internet-facing ALB with an HTTPS listener serving ``certificate_arn``."""
    ec2, elbv2 = moto.client("ec2"), moto.client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{moto.region}{zone}")
               ["Subnet"]["SubnetId"] for i, zone in enumerate("ab")]
    balancer = elbv2.create_load_balancer(Name="aep-api", Subnets=subnets, Type="application",
                                          Scheme="internet-facing")["LoadBalancers"][0]["LoadBalancerArn"]
    group = elbv2.create_target_group(Name="aep-api", Protocol="HTTP", Port=8080, VpcId=vpc,
                                      TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    return elbv2.create_listener(LoadBalancerArn=balancer, Protocol="HTTPS", Port=443,
                                 Certificates=[{"CertificateArn": certificate_arn}],
                                 DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
                                 )["Listeners"][0]["ListenerArn"]


def _cert(arn: str, listeners: list[str] = (), *, cloudfront: bool = False) -> dict:
    return {"name": "api", "domains": [NAME], "key_type": "ecdsa-p256",
            "acm": {"certificate_arn": arn, "listener_arns": list(listeners), "cloudfront": cloudfront}}


def _audit_records(settings) -> list[dict]:
    path = settings.state_dir / "logs" / "audit.jsonl"
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["action"] == "certs.deploy"]


def _key_body(leaf: LeafFiles) -> list[str]:
    """The base64 lines of a PEM private key, and all of them joined."""
    lines = [line for line in leaf.key.read_text().splitlines() if line and not line.startswith("-----")]
    return [*lines, "".join(lines)]


def test_a_newer_version_is_re_imported_under_the_same_arn_and_the_listener_keeps_serving_it(
        settings, pki, moto_account):
    first, second = pki.leaf("first", [NAME]), pki.leaf("second", [NAME])
    arn = _import(moto_account, pki, first)
    listener = _alb_listener(moto_account, arn)
    cert = _cert(arn, [listener])
    version = _store(settings, pki, "api", second)

    plan = acm_plan(settings, cert, version)
    assert plan["needed"] and plan["arn"] == arn and plan["region"] == "eu-west-1"
    assert plan["serving_serial"] == first.serial and plan["wanted_serial"] == second.serial

    done = deploy_to_acm(settings, cert, version, audit_actor="alice@ops")
    assert done["changed"] and done["arn"] == arn and done["serial"] == second.serial
    assert _serial(moto_account, arn) == second.serial
    assert len(moto_account.client("acm").list_certificates()["CertificateSummaryList"]) == 1, "same ARN, no new one"
    served = moto_account.client("elbv2").describe_listener_certificates(ListenerArn=listener)["Certificates"]
    assert [c["CertificateArn"] for c in served] == [arn]
    [record] = _audit_records(settings)
    assert record["target"] == arn and record["result"] == "changed" and record["actor"] == "alice@ops"
    assert record["args"]["serial"] == second.serial and record["args"]["previous_serial"] == first.serial

    assert not acm_plan(settings, cert, version)["needed"]
    again = deploy_to_acm(settings, cert, version)
    assert not again["changed"] and again["serial"] == second.serial
    assert len(_audit_records(settings)) == 1, "nothing imported, nothing audited"


def test_a_key_that_does_not_match_the_certificate_is_refused(settings, pki, moto_account):
    first, second, stranger = pki.leaf("first", [NAME]), pki.leaf("second", [NAME]), pki.leaf("stranger", [NAME])
    arn = _import(moto_account, pki, first)
    version = _store(settings, pki, "api", second, key_from=stranger)

    with pytest.raises(AcmImportRefused, match="private key does not match the certificate") as refused:
        deploy_to_acm(settings, _cert(arn), version)
    assert isinstance(refused.value, StepFailed) and "\n" not in str(refused.value)
    assert _serial(moto_account, arn) == first.serial
    [record] = _audit_records(settings)
    assert record["target"] == arn and record["result"].startswith("refused: ")


def test_a_changed_key_type_is_refused(settings, pki, moto_account):
    first, rsa = pki.leaf("first", [NAME]), pki.leaf("rsa", [NAME], key="rsa2048")
    arn = _import(moto_account, pki, first)
    version = _store(settings, pki, "api", rsa, key_type="rsa-2048")

    with pytest.raises(AcmImportRefused, match="key type rsa-2048 differs from ecdsa-p256") as refused:
        deploy_to_acm(settings, _cert(arn), version)
    assert "\n" not in str(refused.value)
    assert _serial(moto_account, arn) == first.serial
    assert moto_account.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]["KeyAlgorithm"] \
        == "EC_prime256v1"
    assert [r["result"].split(":")[0] for r in _audit_records(settings)] == ["refused"]


def test_a_cloudfront_certificate_is_read_and_imported_in_us_east_1(settings, pki, moto_account):
    first, second = pki.leaf("first", [NAME]), pki.leaf("second", [NAME])
    arn = _import(moto_account, pki, first, region=CLOUDFRONT_REGION)
    assert ":us-east-1:" in arn and moto_account.region == "eu-west-1"
    cert = _cert(arn, cloudfront=True)
    version = _store(settings, pki, "api", second)

    plan = acm_plan(settings, cert, version)
    assert plan["region"] == CLOUDFRONT_REGION and plan["serving_serial"] == first.serial and plan["needed"]
    done = deploy_to_acm(settings, cert, version)
    assert done["changed"] and done["region"] == CLOUDFRONT_REGION
    assert _serial(moto_account, arn, CLOUDFRONT_REGION) == second.serial
    assert moto_account.client("acm").list_certificates()["CertificateSummaryList"] == [], "nothing in eu-west-1"


def test_a_listener_that_does_not_serve_the_certificate_fails_verification(settings, pki, moto_account):
    first, second, other = pki.leaf("first", [NAME]), pki.leaf("second", [NAME]), pki.leaf("other", [NAME])
    arn, other_arn = _import(moto_account, pki, first), _import(moto_account, pki, other)
    listener = _alb_listener(moto_account, other_arn)
    version = _store(settings, pki, "api", second)

    with pytest.raises(VerificationFailed, match="do not serve ACM") as failed:
        deploy_to_acm(settings, _cert(arn, [listener]), version)
    assert listener in str(failed.value)
    assert _serial(moto_account, arn) == second.serial, "the import itself was done"
    [record] = _audit_records(settings)
    assert record["result"].startswith("imported; verification failed: ")


def test_the_private_key_is_in_no_message_result_log_or_audit_record(settings, pki, moto_account):
    first, second, stranger = pki.leaf("first", [NAME]), pki.leaf("second", [NAME]), pki.leaf("stranger", [NAME])
    rsa = pki.leaf("rsa", [NAME], key="rsa2048")
    arn = _import(moto_account, pki, first)
    said: list[str] = []
    for leaf, key_from, key_type in ((second, stranger, "ecdsa-p256"), (rsa, None, "rsa-2048")):
        with pytest.raises(AcmImportRefused) as refused:
            deploy_to_acm(settings, _cert(arn), _store(settings, pki, "api", leaf, key_from=key_from,
                                                       key_type=key_type))
        said += [str(refused.value), repr(refused.value)]
    good = _store(settings, pki, "api", second)
    said.append(json.dumps(acm_plan(settings, _cert(arn), good)))
    said.append(json.dumps(deploy_to_acm(settings, _cert(arn), good)))
    assert _serial(moto_account, arn) == second.serial

    logs = settings.state_dir / "logs"
    audit_text = (logs / "audit.jsonl").read_text()
    assert [r["result"].split(":")[0] for r in _audit_records(settings)] == ["refused", "refused", "changed"]
    log_text = (logs / "aep-ops.jsonl").read_text() if (logs / "aep-ops.jsonl").exists() else ""
    for body in _key_body(stranger) + _key_body(rsa) + _key_body(second):
        for text in (*said, audit_text, log_text):
            assert body not in text
    assert "PRIVATE KEY" not in audit_text + log_text + "".join(said)
