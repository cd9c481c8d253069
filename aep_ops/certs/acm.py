"""ACM certificates as ``certs.check`` reports them: status, expiry, what uses them.

A certificate served by CloudFront lives in us-east-1 whatever the environment's region
(CloudFront only takes certificates from there); an ALB's lives in the environment's region.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aep_ops.certs.findings import CRITICAL, WARNING, Thresholds, worst
from aep_ops.base.errors import AepError

CLOUDFRONT_REGION = "us-east-1"


def acm_rows(settings: Any, certificates: list[dict[str, Any]], thresholds: Thresholds,
             now: datetime) -> list[dict[str, Any]]:
    """One row per configured ACM certificate; an error reading one is that row's finding."""
    rows = []
    for cert in certificates:
        acm = cert.get("acm") or {}
        if not acm.get("certificate_arn"):
            continue
        region = certificate_region(settings, acm)
        row: dict[str, Any] = {"certificate": cert["name"], "arn": acm["certificate_arn"], "region": region}
        try:
            row.update(_describe(settings, acm["certificate_arn"], region))
            row["problems"] = _problems(row, thresholds, now)
        except AepError as exc:
            row["problems"] = [{"code": "acm_unreadable", "severity": CRITICAL, "message": str(exc)}]
        row["status"] = worst(row["problems"])
        rows.append(row)
    return rows


def certificate_region(settings: Any, acm: dict[str, Any]) -> str | None:
    """Where an ACM certificate lives: us-east-1 for CloudFront, else the environment's region."""
    return CLOUDFRONT_REGION if acm.get("cloudfront") else (settings.env.get("aws") or {}).get("region")


def acm_client(settings: Any, region: str | None) -> Any:
    from aep_ops.aws.clients import aws_settings, client

    aws = aws_settings(settings)
    return client({**aws, "region": region} if region else aws, "acm")


def _describe(settings: Any, arn: str, region: str | None) -> dict[str, Any]:
    from aep_ops.aws.clients import aws_errors

    acm = acm_client(settings, region)
    with aws_errors(acm, "reading the ACM certificate", resource=arn):
        found = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    not_after = found.get("NotAfter")
    return {"acm_status": found.get("Status"), "type": found.get("Type"), "domain": found.get("DomainName"),
            "dns_names": found.get("SubjectAlternativeNames") or [], "key_algorithm": found.get("KeyAlgorithm"),
            "serial": normalize_serial(found.get("Serial")),
            "not_after": not_after.isoformat() if not_after else None, "in_use_by": found.get("InUseBy") or []}


def _problems(row: dict[str, Any], thresholds: Thresholds, now: datetime) -> list[dict[str, Any]]:
    from aep_ops.base.textfmt import duration

    problems = []
    if row["acm_status"] != "ISSUED":
        problems.append({"code": "acm_not_issued", "severity": CRITICAL,
                         "message": f"ACM status {row['acm_status']} (ISSUED expected)"})
    if row["not_after"]:
        left = (datetime.fromisoformat(row["not_after"]) - now).total_seconds()
        row["seconds_left"], row["days_left"] = round(left, 3), round(left / 86400, 2)
        if left <= 0:
            problems.append({"code": "expired", "severity": CRITICAL, "message": f"expired {duration(-left)} ago"})
        elif left / 86400 < thresholds.critical_days:
            problems.append({"code": "expires_soon", "severity": CRITICAL, "message": f"expires in {duration(left)}"})
        elif left / 86400 < thresholds.warn_days:
            problems.append({"code": "expires_soon", "severity": WARNING,
                             "message": f"expires in {left / 86400:.0f} days"})
    if not row["in_use_by"]:
        problems.append({"code": "acm_unused", "severity": WARNING,
                         "message": "in use by nothing (no listener or distribution serves it)"})
    return problems


def normalize_serial(serial: str | None) -> str | None:
    """Lowercase hex without colons or leading zeros, as the store keeps it. ACM writes
    ``0a:1b:...`` (hex bytes); moto writes the serial in decimal (digits, no colons)."""
    text = (serial or "").strip().lower()
    if not text:
        return None
    try:
        if ":" in text or any(c in "abcdef" for c in text):
            return format(int(text.replace(":", ""), 16), "x")
        return format(int(text), "x")
    except ValueError:
        return text
