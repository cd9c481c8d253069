"""Heartbeat pings for teams without Prometheus: healthchecks-style start, success and fail URLs.

``metrics.heartbeat_url`` (a secret reference: the URL holds the check's token) is pinged with
``/start`` when a run starts, as it is when the run succeeds, with ``/fail`` when it does not;
``{runbook}`` and ``{env}`` in it become ``backup-run`` and ``prod`` (a healthchecks slug). Each
ping carries ``rid``, a UUID made from the run id (healthchecks pairs start and end by it and
wants a UUID), and the run id itself in the body. A ping never raises and never logs its URL: a
monitoring service that is down must not fail or hide the run, nor leak the token.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from aep_ops.base.errors import AepError
from aep_ops.base.log import get_logger
from aep_ops.base.redact import redact, register

log = get_logger(__name__)
DEFAULT_TIMEOUT = 5
SUFFIX = {"start": "/start", "success": "", "fail": "/fail"}
RID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://aep-ops/run")


def rid(run_id: str) -> str:
    """The run's healthchecks run id: a canonical UUID, the same for every attempt of the run."""
    return str(uuid.uuid5(RID_NAMESPACE, run_id))


def wanted(settings: Any, runbook_id: str) -> bool:
    """Is a heartbeat configured for this runbook on this environment?"""
    values = settings.env.get("metrics") or {}
    only = values.get("heartbeat_runbooks")
    return bool(values.get("heartbeat_url")) and (not only or runbook_id in only)


def ping_url(template: str, event: str, runbook_id: str, env: str, run_id: str) -> str:
    """The URL of one ping: the template filled in, ``/start`` or ``/fail`` appended to its path,
    ``rid`` added to its query."""
    filled = template.replace("{runbook}", runbook_id.replace(".", "-")).replace("{env}", env)
    parts = urllib.parse.urlsplit(filled)
    query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query), ("rid", rid(run_id))])
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + SUFFIX[event], query,
                                    parts.fragment))


def ping(settings: Any, runbook_id: str, run_id: str, event: str, detail: str = "") -> bool:
    """Send one ping (``start``, ``success``, ``fail``); True when the service answered 2xx.
    Never raises: a failure is one warning without the URL."""
    if not wanted(settings, runbook_id):
        return False
    values = settings.env.get("metrics") or {}
    timeout = float(values.get("heartbeat_timeout_seconds") or DEFAULT_TIMEOUT)
    try:
        url = ping_url(settings.secret(values["heartbeat_url"]), event, runbook_id, settings.env_name, run_id)
        register(url)  # the filled-in URL too: it no longer contains the resolved value as written
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("the heartbeat URL must be http:// or https://")
        body = f"aep-ops {runbook_id} on {settings.env_name}: run {run_id} {event}"
        body += f"\n{redact(detail)[:2000]}" if detail else ""
        request = urllib.request.Request(url, data=body.encode(), method="POST",
                                         headers={"User-Agent": "aep-ops", "Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - scheme checked above
            answer.read(1024)
        log.info("heartbeat.sent", ping=event)
        return True
    except Exception as exc:  # noqa: BLE001 - a ping must never fail the run
        log.warning("heartbeat.failed", ping=event, error=_why(exc, timeout))
        return False


def _why(exc: BaseException, timeout: float) -> str:
    """What went wrong, without the URL (an HTTP error's or a parser's message may quote it)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return redact(f"{type(reason).__name__}: {getattr(reason, 'strerror', None) or reason}")
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, AepError) or (isinstance(exc, ValueError) and "heartbeat URL" in str(exc)):
        return redact(str(exc))  # an unresolvable secret reference names the reference, not a value
    return type(exc).__name__
