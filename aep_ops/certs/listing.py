"""``certs.list``: each certificate's lineage (its stored versions, the current one), where it is
served, and when it will be renewed and why: what an on-call engineer asks before touching one."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def lineages(settings: Any) -> list[dict[str, Any]]:
    from aep_ops.certs import store
    from aep_ops.certs.renewal import decide
    from aep_ops.certs.settings import certificates

    now = datetime.now(timezone.utc)
    rows = []
    for cert in certificates(settings):
        current = store.current(settings, cert["name"])
        rows.append({"name": cert["name"], "domains": list(cert.get("domains") or []),
                     "current": current.number if current else None,
                     "versions": [v.to_json() for v in store.versions(settings, cert["name"])],
                     "served_by": served_by(cert), "next_renewal": decide(settings, cert, now=now, force=False)})
    return rows


def served_by(cert: dict[str, Any]) -> list[str]:
    out = []
    nginx, acm = cert.get("nginx") or {}, cert.get("acm") or {}
    if nginx.get("role"):
        out.append(f"nginx on role {nginx['role']} (port {nginx.get('port') or 443})")
    if acm.get("certificate_arn"):
        out.append(f"ACM {acm['certificate_arn']}" + (" (CloudFront, us-east-1)" if acm.get("cloudfront") else ""))
    out += [f"endpoint {e}" for e in cert.get("endpoints") or []]
    return out


def print_lineages(rows: list[dict[str, Any]], env: str) -> None:
    if not rows:
        print(f"no certificates configured for {env} (certificates: in the environment's configuration)")
        return
    for row in rows:
        renewal = row["next_renewal"]
        when = "now" if renewal["due"] else renewal["renew_at"][:16].replace("T", " ") + " UTC"
        print(f"{row['name']}: {', '.join(row['domains'])}")
        print(f"  served by: {'; '.join(row['served_by']) or 'nothing configured'}")
        print(f"  next renewal: {when} ({renewal['reason']})")
        if not row["versions"]:
            print("  versions: none yet (certs.renew issues the first)")
        for version in row["versions"]:
            mark = "*" if version["number"] == row["current"] else " "
            print(f"  {mark} v{version['number']}  serial {version['serial']}  not after {version['not_after'][:16]}"
                  f"  from {version['directory']}  stored {version['created_at'][:16]}")
