"""Deploying a stored certificate version to ACM: re-import under the same ARN, then verify.

Re-importing under the certificate's own ARN is what lets every ALB listener and CloudFront
distribution that uses it pick up the new certificate without being touched. Real ACM refuses a
re-import whose key does not match the certificate or whose key type or size differs from the
certificate it replaces; moto accepts both, so both are checked here, before anything is sent.
A certificate that already has the version's serial is left alone (no import, no audit record).
Every import attempt, done or refused, is audited. The private key is read only to be checked
and sent: it is registered with ``aep_ops.base.redact`` first and never appears in a message, a log
line, an audit record or a return value.
"""

from __future__ import annotations

from typing import Any

from aep_ops.base import redact
from aep_ops.certs.acm import acm_client, certificate_region, normalize_serial
from aep_ops.base.errors import ConfigError, StepFailed, VerificationFailed
from aep_ops.base.log import audit, get_logger

log = get_logger()

AUDIT_ACTION = "certs.deploy"
# ACM's KeyAlgorithm values, in the configuration's names (keys.KEY_TYPES and what ACM also knows).
ACM_KEY_TYPES = {
    "EC_prime256v1": "ecdsa-p256", "EC_secp384r1": "ecdsa-p384", "EC_secp521r1": "ecdsa-p521",
    "RSA_1024": "rsa-1024", "RSA_2048": "rsa-2048", "RSA_3072": "rsa-3072", "RSA_4096": "rsa-4096",
}


class AcmImportRefused(StepFailed):
    """A re-import real ACM would reject (or that would change the key type): nothing was sent."""


def acm_plan(settings: Any, cert: dict[str, Any], version: Any) -> dict[str, Any]:
    """Read-only: which serial the ACM certificate has now, and whether ``version`` must be imported."""
    from aep_ops.aws.clients import aws_errors

    arn, region = _target(settings, cert)
    acm = acm_client(settings, region)
    with aws_errors(acm, f"reading the ACM certificate of {cert['name']}", resource=arn):
        found = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    serving, wanted = normalize_serial(found.get("Serial")), normalize_serial(version.serial)
    needed = serving != wanted
    acm_key_type = acm_key_type_name(found.get("KeyAlgorithm"))
    summary = (f"re-import version {version.number} (serial {wanted}) over serial {serving or 'none'} in ACM {arn}"
               if needed else f"ACM {arn} already has version {version.number} (serial {wanted})")
    return {"arn": arn, "region": region, "serving_serial": serving, "wanted_serial": wanted, "needed": needed,
            "acm_key_type": acm_key_type, "acm_status": found.get("Status"), "summary": summary}


def deploy_to_acm(settings: Any, cert: dict[str, Any], version: Any, *,
                  audit_actor: str | None = None) -> dict[str, Any]:
    """Re-import ``version`` under the configured ARN when needed; verify the serial and the listeners."""
    plan = acm_plan(settings, cert, version)  # facts go stale: checked right before acting
    arn, region = plan["arn"], plan["region"]
    listeners = list((cert.get("acm") or {}).get("listener_arns") or [])
    if not plan["needed"]:
        verify_listeners(settings, arn, listeners)
        return {**_result(plan, version, changed=False), "listeners": listeners}
    audit_args = {"certificate": cert["name"], "version": version.number, "serial": plan["wanted_serial"],
                  "previous_serial": plan["serving_serial"], "region": region}
    extra = {"actor": audit_actor} if audit_actor else {}
    key_pem = version.key_pem
    redact.register(key_pem)
    cert_pem, chain_pem = version.cert_pem, version.chain_pem
    try:
        check_importable(cert["name"], arn, version, key_pem, cert_pem, plan["acm_key_type"])
    except AcmImportRefused as exc:
        audit(settings.state_dir, AUDIT_ACTION, target=arn, args=audit_args, result=f"refused: {exc}", **extra)
        raise
    try:
        _import(settings, region, arn, cert_pem=cert_pem, key_pem=key_pem, chain_pem=chain_pem)
    except Exception as exc:
        audit(settings.state_dir, AUDIT_ACTION, target=arn, args=audit_args, result=f"failed: {exc}", **extra)
        raise
    try:
        after = acm_plan(settings, cert, version)
        if after["needed"]:
            raise VerificationFailed(
                f"ACM {arn} ({region}) has serial {after['serving_serial']} after importing version {version.number}"
                f" (serial {after['wanted_serial']}); look at the certificate in ACM, then run the deploy again")
        verify_listeners(settings, arn, listeners)
    except Exception as exc:
        audit(settings.state_dir, AUDIT_ACTION, target=arn, args=audit_args,
              result=f"imported; verification failed: {exc}", **extra)
        raise
    audit(settings.state_dir, AUDIT_ACTION, target=arn, args=audit_args, result="changed", **extra)
    log.info("certs.acm.imported", certificate=cert["name"], arn=arn, region=region, serial=plan["wanted_serial"])
    return {**_result(plan, version, changed=True), "listeners": listeners}


def check_importable(name: str, arn: str, version: Any, key_pem: str, cert_pem: str, acm_key_type: str | None) -> None:
    """Refuse what real ACM refuses on a re-import: a key that is not the certificate's, or a
    key type or size other than the one the ARN holds now (listeners and clients were set up for it)."""
    from cryptography import x509

    from aep_ops.certs.keys import key_matches_cert, key_type_of

    where = f"certificate {name} version {version.number} (serial {version.serial})"
    try:
        matches = key_matches_cert(key_pem, cert_pem)
        public_key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    except (ValueError, TypeError):  # cryptography's parse errors name no key material
        raise AcmImportRefused(f"{where}: its key or certificate file cannot be read; renew it"
                               f" (certs.renew) before deploying to ACM {arn}") from None
    if not matches:
        raise AcmImportRefused(f"{where}: the private key does not match the certificate; not importing into"
                               f" ACM {arn} (renew the certificate, certs.renew)")
    ours = key_type_of(public_key)
    if acm_key_type and ours != acm_key_type:
        raise AcmImportRefused(f"{where}: key type {ours} differs from {acm_key_type} of ACM {arn}, and ACM keeps"
                               f" the key type on a re-import; issue it with key_type {acm_key_type} or import it"
                               " as a new ACM certificate and point the listeners at that")


def verify_listeners(settings: Any, arn: str, listener_arns: list[str]) -> None:
    """Each listener must still serve ``arn`` (as its default or an SNI certificate)."""
    from aep_ops.aws.clients import aws_errors, aws_settings, client

    aws = aws_settings(settings)
    missing = []
    for listener in listener_arns:
        elbv2 = client({**aws, "region": _arn_region(listener) or aws.get("region")}, "elbv2")
        served: list[str] = []
        with aws_errors(elbv2, "reading the certificates of the ALB listener", resource=listener):
            for page in elbv2.get_paginator("describe_listener_certificates").paginate(ListenerArn=listener):
                served += [c.get("CertificateArn") for c in page.get("Certificates") or []]
        if arn not in served:
            missing.append(listener)
    if missing:
        raise VerificationFailed(f"ALB listener(s) {', '.join(missing)} do not serve ACM {arn}; add it to them"
                                 " (elbv2 add-listener-certificates or modify-listener) or fix acm.listener_arns")


def acm_key_type_name(algorithm: str | None) -> str | None:
    """ACM's ``EC_prime256v1`` / ``RSA_2048`` as the configuration names it (``ecdsa-p256``, ``rsa-2048``)."""
    if not algorithm:
        return None
    return ACM_KEY_TYPES.get(algorithm.replace("-", "_"), algorithm.lower().replace("_", "-"))


def _import(settings: Any, region: str, arn: str, *, cert_pem: str, key_pem: str, chain_pem: str) -> None:
    from aep_ops.aws.clients import aws_errors

    acm = acm_client(settings, region)
    request = {"CertificateArn": arn, "Certificate": cert_pem.encode(), "PrivateKey": key_pem.encode()}
    if chain_pem.strip():
        request["CertificateChain"] = chain_pem.encode()
    with aws_errors(acm, "re-importing the certificate into ACM", resource=arn):
        acm.import_certificate(**request)


def _target(settings: Any, cert: dict[str, Any]) -> tuple[str, str]:
    """The ARN and its region: us-east-1 for CloudFront, else the environment's."""
    acm = cert.get("acm") or {}
    arn = acm.get("certificate_arn")
    if not arn:
        raise ConfigError(f"certificate {cert.get('name')} has no acm.certificate_arn in environment"
                          f" {settings.env_name}: add it to deploy to ACM")
    region = certificate_region(settings, acm)
    if not region:
        raise ConfigError(f"environment {settings.env_name} has no aws.region: set it to deploy {cert.get('name')}"
                          " to ACM")
    return arn, region


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


def _result(plan: dict[str, Any], version: Any, *, changed: bool) -> dict[str, Any]:
    summary = (f"re-imported version {version.number} (serial {plan['wanted_serial']}) into ACM {plan['arn']}"
               if changed else plan["summary"])
    return {"arn": plan["arn"], "region": plan["region"], "changed": changed, "version": version.number,
            "previous_serial": plan["serving_serial"], "serial": plan["wanted_serial"], "summary": summary}
