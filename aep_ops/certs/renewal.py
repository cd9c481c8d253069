"""``certs.renew``'s decisions and its one action, apart from the engine: which certificates,
which CA, is each one due, and issue + store one.

The CA settings are checked before anything is asked of it: a production environment never
uses a staging directory, and a lineage issued by a production CA never takes a staging
certificate (aep_ops.certs.store)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from aep_ops.base.errors import ConfigError, UsageError

ISSUE_TIMEOUT = 120
ARI_TIMEOUT = 10


def selected(settings: Any, name: str | None) -> list[dict[str, Any]]:
    """The certificates to act on: all, or the one ``--name`` names (blank refused, unknown named)."""
    from aep_ops.certs.settings import certificates
    from aep_ops.base.errors import refuse_blank

    refuse_blank("--name", name, "give a certificate name of this environment, or leave --name out for all")
    found = certificates(settings)
    if name is None:
        return found
    chosen = [c for c in found if c["name"] == name.strip()]
    if not chosen:
        known = ", ".join(c["name"] for c in found) or "none"
        raise UsageError(f"--name {name.strip()!r}: no such certificate in environment {settings.env_name}"
                         f" (configured: {known})")
    return chosen


def check_renewable(settings: Any, cert: dict[str, Any]) -> None:
    """What an order needs, checked before the CA or any host is asked: names that can be on a
    certificate, and what the validation method needs."""
    from aep_ops.certs.endpoints import DNS_NAME

    where = f"environments.{settings.env_name}.certificates[{cert['name']}]"
    domains = cert.get("domains") or []
    if not domains:
        raise ConfigError(f"{where}.domains is empty: list the DNS names the certificate is for")
    bad = [d for d in domains if not isinstance(d, str) or not DNS_NAME.fullmatch(d) or "*" in d[1:]]
    if bad:
        raise ConfigError(f"{where}.domains: {bad[0]!r} is not a DNS name (a wildcard only as '*.' at the start)")
    if (cert.get("validation") or "http-01") == "dns-01":
        if not cert.get("route53_zone_id"):
            raise ConfigError(f"{where}: dns-01 needs route53_zone_id")
    elif not ((cert.get("nginx") or {}).get("role") and (cert.get("nginx") or {}).get("webroot")):
        raise ConfigError(f"{where}: http-01 needs nginx.role and nginx.webroot (or validation: dns-01)")
    elif any(d.startswith("*.") for d in domains):
        raise ConfigError(f"{where}: a wildcard name needs validation: dns-01 (CAs refuse http-01 for wildcards)")


def acme_settings(settings: Any, *, staging: bool) -> dict[str, Any]:
    """The directory to use (``staging_directory`` for a dry run) and how to reach it."""
    from aep_ops.certs.acme_issue import is_staging_directory

    acme = settings.env.get("acme") or {}
    key = "staging_directory" if staging else "directory"
    where = f"environments.{settings.env_name}.acme.{key}"
    directory = acme.get(key)
    if not directory:
        raise ConfigError(f"{where} is not set: give the ACME directory URL"
                          + (" that `certs.renew --dry-run` may use" if staging else ""))
    if not staging and settings.production and is_staging_directory(directory):
        raise ConfigError(f"{where} is {directory}, a staging (test) CA, in the production environment"
                          f" {settings.env_name}: its certificates are not trusted; use the production directory")
    return {"directory": directory, "ca_bundle": acme.get("ca_bundle"), "contact": acme.get("contact"),
            "timeout": float(acme.get("timeout") or ISSUE_TIMEOUT), "staging": is_staging_directory(directory)}


@contextlib.contextmanager
def account_key_path(settings: Any) -> Iterator[Path]:
    """The ACME account key as a 0600 file: a ``file:`` reference is used (created on first use),
    any other reference (``aws-sm:``) is resolved into a private temporary file removed after."""
    ref = (settings.env.get("acme") or {}).get("account_key")
    if ref is None:
        yield settings.state_dir / "certs" / settings.env_name / "acme-account.pem"
        return
    if ref.scheme == "file":
        yield Path(ref.target)
        return
    pem = settings.secret(ref)
    with tempfile.TemporaryDirectory(prefix="aep-acme-", dir=settings.state_dir) as private:
        path = Path(private) / "account.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(pem)
        yield path


def decide(settings: Any, cert: dict[str, Any], *, now: dt.datetime, force: bool) -> dict[str, Any]:
    """Is ``cert`` due? The CA's renewal window (ARI) when it has one, else its lifetime rule."""
    from aep_ops.certs import store
    from aep_ops.certs.due import fetch_renewal_info, renewal_decision

    version = store.current(settings, cert["name"])
    row: dict[str, Any] = {"name": cert["name"], "serial": version.serial if version else None}
    if version is None:
        return {**row, "due": True, "renew_at": now.isoformat(), "reason": "never issued"}
    if sorted(version.domains) != sorted(cert.get("domains") or []):
        return {**row, "due": True, "renew_at": now.isoformat(),
                "reason": f"the configured domains changed (was {', '.join(version.domains)})"}
    info, note = None, ""
    try:
        info = fetch_renewal_info(version.directory, version.cert_pem,
                                  ca_bundle=(settings.env.get("acme") or {}).get("ca_bundle"), timeout=ARI_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - a CA without a working ARI endpoint falls back to the lifetime
        note = f" (renewal window not read: {exc})"
    before = cert.get("renew_before_days")
    decision = renewal_decision(version.cert_pem, now=now, renewal_info=info,
                                renew_before=dt.timedelta(days=before) if before else None)
    due = decision.due or force
    reason = ("--force; " if force and not decision.due else "") + decision.reason + note
    return {**row, "due": due, "renew_at": decision.renew_at.isoformat(), "reason": reason}


def challenge_for(settings: Any, cert: dict[str, Any]) -> Any:
    """http-01 through the role's webroots (the default), or dns-01 through Route 53."""
    if (cert.get("validation") or "http-01") == "dns-01":
        from aep_ops.certs.route53 import Route53Challenge

        return Route53Challenge(settings, cert["route53_zone_id"])
    from aep_ops.certs.webroot import WebrootChallenge
    from aep_ops.fleet.inventory import executor_for, hosts_for

    nginx = cert.get("nginx") or {}
    hosts = hosts_for(settings, role=nginx["role"])
    return WebrootChallenge(nginx["webroot"], hosts, lambda host: executor_for(settings, host))


def issue_and_store(settings: Any, cert: dict[str, Any], acme: dict[str, Any], *, now: dt.datetime,
                    store_it: bool, say: Callable[[str], None]) -> dict[str, Any]:
    """Issue ``cert`` from ``acme``'s directory; store it as the new current version unless
    ``store_it`` is False (a dry run). Returns what may be shown (never the key)."""
    from aep_ops.certs import store
    from aep_ops.certs.acme_issue import issue
    from aep_ops.base.redact import register

    if store_it:
        store.check_directory_switch(settings, cert["name"], acme["directory"], staging=acme["staging"])
    with account_key_path(settings) as key_path:
        issued = issue(acme["directory"], account_key_path=key_path, ca_bundle=acme["ca_bundle"],
                       contact=acme["contact"], domains=list(cert.get("domains") or []),
                       key_type=cert.get("key_type") or "ecdsa-p256", challenge=challenge_for(settings, cert),
                       timeout=acme["timeout"], on_progress=say)
    register(issued.key_pem)  # line by line too: masked wherever aep-ops writes
    shown = {"name": cert["name"], "serial": issued.serial, "not_after": issued.not_after.isoformat(),
             "issuer": issued.issuer, "directory": acme["directory"]}
    if not store_it:
        return shown
    version = store.save(settings, cert["name"], key_pem=issued.key_pem, cert_pem=issued.cert_pem,
                         chain_pem=issued.chain_pem, fullchain_pem=issued.fullchain_pem, serial=issued.serial,
                         not_before=issued.not_before, not_after=issued.not_after, issuer=issued.issuer,
                         domains=list(cert.get("domains") or []), key_type=cert.get("key_type") or "ecdsa-p256",
                         directory=acme["directory"], staging=acme["staging"], now=now)
    return {**shown, "version": version.number}
