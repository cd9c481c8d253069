"""What ``certs.check`` connects to: ``--endpoints HOST[:PORT][@SNI],...`` as typed, or every
configured certificate's serving points. An nginx-served certificate is checked on every host
of its role by the host's own address, with the certificate's name as SNI: a load balancer or
DNS in front can hide the one host that still serves a stale certificate."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from aep_ops.base.netports import is_ip_address
from aep_ops.config.schema import preview
from aep_ops.base.errors import UsageError

DEFAULT_PORT = 443
ENDPOINTS_BLANK = "give HOST[:PORT][@SNI],... (e.g. api.example.org, 10.0.1.5:8443@api.example.org)"
DNS_NAME = re.compile(r"(?=.{1,253}$)(\*\.)?([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?")
_SPEC = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\[\]]+))(?::(?P<port>\d{1,5}))?(?:@(?P<sni>.+))?")


@dataclass(frozen=True)
class Endpoint:
    """One TLS endpoint: where to connect (``address``, ``port``), the name sent as SNI and
    checked against the certificate (``sni``; None for a bare IP address), and what it stands for."""

    address: str
    port: int = DEFAULT_PORT
    sni: str | None = None
    certificate: str | None = None  # the configured certificate's name, None for --endpoints
    host: str | None = None  # the inventory host's name, for an nginx-served certificate

    @property
    def label(self) -> str:
        where = f"[{self.address}]" if ":" in self.address else self.address
        text = f"{where}:{self.port}"
        return text if self.sni in (None, self.address) else f"{text}@{self.sni}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def parse_endpoint(spec: str, *, flag: str = "--endpoints", default_sni: str | None = None) -> Endpoint:
    """``HOST[:PORT][@SNI]`` (IPv6 as ``[ADDR]:PORT``). Without ``@SNI`` a name is its own SNI and
    an IP address sends none (unless ``default_sni``). Anything that is not a host name or an
    address is refused: it would otherwise reach a resolver or a log line as typed."""
    text = spec.strip()
    what = f"{flag} entry {preview(spec)}"
    match = _SPEC.fullmatch(text)
    if not text or text.startswith("-") or not match:
        raise UsageError(f"{what} is not HOST[:PORT][@SNI]; {ENDPOINTS_BLANK}")
    address = match["v6"] or match["host"]
    if match["v6"]:
        _check_ip(match["v6"], what)
    elif not is_ip_address(address) and not DNS_NAME.fullmatch(address) or address.startswith("*"):
        raise UsageError(f"{what}: {address!r} is not a host name or an IP address")
    port = int(match["port"]) if match["port"] else DEFAULT_PORT
    if not 0 < port < 65536:
        raise UsageError(f"{what}: port {port} is out of range (1-65535)")
    sni = match["sni"]
    if sni is not None and (not DNS_NAME.fullmatch(sni) or sni.startswith("*") or is_ip_address(sni)):
        raise UsageError(f"{what}: SNI {sni!r} is not a DNS name (SNI carries names, never addresses or wildcards)")
    if sni is None:
        sni = default_sni if default_sni else (None if is_ip_address(address) else address)
    return Endpoint(address=address, port=port, sni=sni.rstrip(".").lower() if sni else None)


def endpoints_flag(value: str | None) -> list[Endpoint] | None:
    """``--endpoints`` as given: None when absent (the configuration); given but blank is a mistake."""
    if value is None:
        return None
    entries = [e.strip() for e in str(value).split(",") if e.strip()]
    if not entries:
        raise UsageError(f"--endpoints is empty: {ENDPOINTS_BLANK}")
    return _unique([parse_endpoint(e) for e in entries])


def configured_endpoints(settings: Any, certificates: list[dict[str, Any]]) -> list[Endpoint]:
    """Every serving point of the configured certificates: each host of an nginx role by its
    address (the role's hosts come from the inventory: config or EC2), then ``endpoints:``."""
    from aep_ops.fleet.inventory import hosts_for

    found: list[Endpoint] = []
    for cert in certificates:
        name, sni = cert["name"], probe_name(cert)
        nginx = cert.get("nginx") or {}
        if nginx.get("role"):
            port = int(nginx.get("port") or DEFAULT_PORT)
            for host in hosts_for(settings, role=nginx["role"]):
                found.append(Endpoint(address=host.address, port=port, sni=sni, certificate=name, host=host.name))
        for spec in cert.get("endpoints") or []:
            parsed = parse_endpoint(spec, flag=f"certificates[{name}].endpoints", default_sni=sni)
            found.append(Endpoint(parsed.address, parsed.port, parsed.sni, certificate=name))
    return _unique(found)


def probe_name(cert: dict[str, Any]) -> str | None:
    """The SNI a configured certificate is asked for: its first non-wildcard domain; for a
    wildcard-only certificate a name the wildcard covers (``*.example.org`` -> ``www.example.org``)."""
    domains = [str(d).lower() for d in cert.get("domains") or []]
    for domain in domains:
        if not domain.startswith("*."):
            return domain
    return f"www.{domains[0][2:]}" if domains else None


def _unique(endpoints: list[Endpoint]) -> list[Endpoint]:
    seen: dict[tuple, Endpoint] = {}
    for ep in endpoints:
        seen.setdefault((ep.address, ep.port, ep.sni, ep.certificate, ep.host), ep)
    return list(seen.values())


def _check_ip(text: str, what: str) -> None:
    if not is_ip_address(text):
        raise UsageError(f"{what}: [{text}] is not an IPv6 address")
