"""dns-01 answers in a Route 53 hosted zone: the ``challenge`` object ``acme_issue.issue`` takes.

Why it works the way it does:

- One TXT record set holds several values: the apex and the wildcard both validate at
  ``_acme-challenge.NAME``, and other tools (another ACME client, a domain verification) may
  keep values there too. ``present`` reads the record set and UPSERTs it with our value added;
  ``cleanup`` re-reads it and takes only our value out (DELETE, with the exact current values
  and TTL as Route 53 requires, once ours was the last). Nothing else in the set is changed,
  not even its TTL: a set that already exists keeps its TTL, a new one gets ``ttl`` (10 s, as
  certbot-dns-route53 does, so a resolver does not keep a stale answer for long).
- ``present`` returns only once the change is INSYNC (boto3's ``resource_record_sets_changed``
  waiter, bounded by ``wait_timeout``): then every Route 53 name server answers with the value.
  ``cleanup`` does not wait: nothing depends on the removal reaching the name servers.
- Read-modify-write: calls on one instance are serialized by a lock, so threads sharing it
  never lose a value. Another process writing the same record set at the same moment can
  still race us (Route 53 has no conditional UPSERT); ACME clients on one zone run one at a time.
- The name must be in the zone (checked against the zone's name before any change), and every
  AWS error is one AepError line through ``aws_errors``.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from typing import Any, Callable

from aep_ops.aws.clients import aws_errors, client
from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.base.log import get_logger

log = get_logger(__name__)

DEFAULT_TTL = 10
WAIT_DELAY = 5  # seconds between GetChange polls (Route 53 usually syncs in 30-60 s)


@dataclass(frozen=True)
class TxtRecordSet:
    """A TXT record set as Route 53 holds it: ``values`` in Route 53's quoted form."""

    name: str
    ttl: int
    values: tuple[str, ...]


class Route53Challenge:
    """dns-01 through the Route 53 hosted zone ``zone_id`` (``Z123`` or ``/hostedzone/Z123``)."""

    kind = "dns-01"

    def __init__(self, aws_source: Any, zone_id: str, *, ttl: int = DEFAULT_TTL,
                 on_progress: Callable[[str], None] | None = None, wait_timeout: float = 300) -> None:
        self.zone_id = bare_zone_id(zone_id)
        if ttl < 1 or wait_timeout <= 0:
            raise UsageError(f"Route 53 dns-01: ttl ({ttl}) and wait_timeout ({wait_timeout}) must be positive")
        self.ttl = int(ttl)
        self.wait_timeout = wait_timeout
        self._aws_source = aws_source
        self._say = on_progress or (lambda line: None)
        self._route53: Any = None
        self._zone_name: str | None = None
        self._lock = threading.Lock()

    def present(self, domain: str, name: str, value: str) -> None:
        """Add ``value`` to the TXT record set ``name`` and wait until Route 53 serves it."""
        with self._lock:
            fqdn = self._name_in_zone(name)
            ours, current = quoted(value), self._read(fqdn)
            if current is not None and ours in current.values:
                self._say(f"Route 53 TXT {fqdn} already holds the dns-01 value for {domain}")
                return
            values = (current.values if current else ()) + (ours,)
            ttl = current.ttl if current else self.ttl
            change_id = self._change("UPSERT", TxtRecordSet(fqdn, ttl, values),
                                     f"adding the dns-01 TXT value for {domain}")
            self._say(f"Route 53 TXT {fqdn} now has {len(values)} value(s); waiting for INSYNC")
            self._wait(change_id, fqdn)
            self._say(f"Route 53 TXT {fqdn} is INSYNC")

    def cleanup(self, domain: str, name: str, value: str) -> None:
        """Take ``value`` out of the TXT record set ``name``; a value or record already gone is fine."""
        with self._lock:
            fqdn = self._name_in_zone(name)
            ours, current = quoted(value), self._read(fqdn)
            if current is None or ours not in current.values:
                log.info("certs.route53.cleanup.already_gone", zone_id=self.zone_id, name=fqdn, domain=domain)
                return
            rest = tuple(v for v in current.values if v != ours)
            doing = f"removing the dns-01 TXT value for {domain}"
            if rest:
                self._change("UPSERT", TxtRecordSet(fqdn, current.ttl, rest), doing)
            else:
                self._change("DELETE", current, doing)
            self._say(f"Route 53 TXT {fqdn}: dns-01 value for {domain} removed ({len(rest)} left)")

    def _client(self) -> Any:
        if self._route53 is None:
            self._route53 = client(self._aws_source, "route53")
        return self._route53

    def _name_in_zone(self, name: str) -> str:
        """``name`` as an FQDN, after checking it lies in the zone (Route 53 itself would only
        check a name suffix, so ``evil-aep.test`` would pass for ``aep.test``)."""
        fqdn = fqdn_of(name)
        if self._zone_name is None:
            route53 = self._client()
            with aws_errors(route53, "reading the Route 53 hosted zone for dns-01",
                            resource=f"Route 53 hosted zone {self.zone_id}"):
                self._zone_name = fqdn_of(route53.get_hosted_zone(Id=self.zone_id)["HostedZone"]["Name"])
        zone = self._zone_name
        if fqdn != zone and not fqdn.endswith("." + zone):
            raise ConfigError(f"dns-01 record {fqdn} is not in Route 53 hosted zone {self.zone_id} ({zone}):"
                              f" configure the hosted zone that holds this name; nothing was changed")
        return fqdn

    def _read(self, fqdn: str) -> TxtRecordSet | None:
        route53 = self._client()
        with aws_errors(route53, f"reading the TXT record {fqdn}", resource=f"Route 53 hosted zone {self.zone_id}"):
            found = route53.list_resource_record_sets(HostedZoneId=self.zone_id, StartRecordName=fqdn,
                                                      StartRecordType="TXT", MaxItems="1")["ResourceRecordSets"]
        for record in found:
            if fqdn_of(record["Name"]) == fqdn and record["Type"] == "TXT" and "SetIdentifier" not in record:
                return TxtRecordSet(fqdn, int(record["TTL"]), tuple(r["Value"] for r in record["ResourceRecords"]))
        return None

    def _change(self, action: str, record: TxtRecordSet, doing: str) -> str:
        route53 = self._client()
        batch = {"Comment": f"aep-ops dns-01 {action.lower()}", "Changes": [{"Action": action, "ResourceRecordSet": {
            "Name": record.name, "Type": "TXT", "TTL": record.ttl,
            "ResourceRecords": [{"Value": v} for v in record.values]}}]}
        with aws_errors(route53, f"{doing} at {record.name}", resource=f"Route 53 hosted zone {self.zone_id}"):
            change = route53.change_resource_record_sets(HostedZoneId=self.zone_id, ChangeBatch=batch)
        change_id = change["ChangeInfo"]["Id"]
        log.info("certs.route53.txt.changed", action=action, zone_id=self.zone_id, name=record.name,
                 values=len(record.values), change_id=change_id)
        return change_id

    def _wait(self, change_id: str, fqdn: str) -> None:
        route53 = self._client()
        delay = max(1, min(WAIT_DELAY, math.ceil(self.wait_timeout)))
        attempts = math.ceil(self.wait_timeout / delay) + 1  # the first poll is immediate
        with aws_errors(route53, f"waiting for the TXT record {fqdn} to be INSYNC",
                        resource=f"Route 53 change {change_id}"):
            route53.get_waiter("resource_record_sets_changed").wait(
                Id=change_id, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})


def bare_zone_id(zone_id: str) -> str:
    """``Z123`` from ``/hostedzone/Z123`` or ``Z123`` (both forms appear in configs and API answers)."""
    bare = str(zone_id or "").strip().removeprefix("/").removeprefix("hostedzone/")
    if not re.fullmatch(r"[A-Za-z0-9]+", bare):
        raise ConfigError(f"Route 53 hosted zone id {zone_id!r} is not an id like Z0123456789ABC"
                          f" (or /hostedzone/Z0123456789ABC): fix certs.route53_zone_id")
    return bare


def fqdn_of(name: str) -> str:
    """Lowercase, one trailing dot, Route 53's octal escapes (``\\052`` for ``*``) decoded."""
    decoded = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), name.strip())
    return decoded.lower().rstrip(".") + "."


def quoted(value: str) -> str:
    """A TXT value in Route 53's form: one double-quoted string, with ``"`` and ``\\`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
