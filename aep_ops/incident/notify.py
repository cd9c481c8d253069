"""Telling people: one notice to every configured channel (PagerDuty, OpsGenie, Slack) at once.

Both front doors of notification come here: ``inv incident.notify`` (a person pages, acknowledges
or resolves) and the run hook (aep_ops/incident/run_hooks.py: a runbook named in
``notify.on_failure`` failed, or later succeeded). One dedup key per runbook and environment,
``aep-ops/<env>/<runbook>``, is PagerDuty's ``dedup_key`` and OpsGenie's ``alias``, so the success
that follows a failed drill resolves the drill's page and nothing else. Which keys have a page
open is kept in STATE_DIR/notify/open.json (aep_ops/incident/notify_state.py): a success of a
runbook that never paged sends nothing.

Secrets are resolved here, in this thread, at the moment of sending (so they are registered for
masking before any thread could write them). Channels are tried side by side, each within its
own bounded policy (aep_ops/incident/notify_http.py), so the whole takes at most about one
``deadline_seconds``. Every outcome is logged, audited and counted in metrics; nothing raises.
"""

from __future__ import annotations

import importlib
import socket
from dataclasses import dataclass, field
from typing import Any

from aep_ops.base.errors import ConfigError
from aep_ops.base.log import audit, get_logger
from aep_ops.base.redact import redact, redact_obj

CHANNELS = ("pagerduty", "opsgenie", "slack")
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
ALL = "all"  # notify.on_failure: [all] pages for every runbook; only this explicit word widens
DEFAULT_TIMEOUT, DEFAULT_RETRIES, DEFAULT_DEADLINE = 5, 2, 15
DEFAULT_SEVERITY = "critical"
KEY_MAX = 255  # PagerDuty's dedup_key limit (OpsGenie's alias allows 512)

log = get_logger(__name__)


@dataclass(frozen=True)
class Notice:
    """One thing to tell: ``action`` (trigger, acknowledge, resolve) of the alert ``key``."""

    action: str
    key: str
    env: str
    summary: str = ""
    severity: str = DEFAULT_SEVERITY
    runbook: str = ""
    run_id: str = ""
    command: str = ""  # what the reader runs next: "inv runs.show RUN_ID"
    kind: str = "manual"  # PagerDuty's class: "manual" or "runbook failure"
    source: str = field(default_factory=socket.gethostname)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    channel: str
    ok: bool
    why: str  # "HTTP 202" or what failed
    attempts: int = 0
    seconds: float = 0.0

    def line(self, notice: Notice) -> str:
        if self.ok:
            return f"sent ({notice.action}, key {notice.key}, {self.attempts} attempt{'s' * (self.attempts != 1)})"
        return f"failed: {self.why}"


@dataclass(frozen=True)
class NotifyConfig:
    env: str
    sections: dict[str, dict[str, Any]]  # configured channel -> its section
    timeout: float
    retries: int
    deadline: float
    on_failure: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Any) -> "NotifyConfig":
        values = settings.env.get("notify") or {}
        sections = {name: dict(values.get(name) or {}) for name in CHANNELS}
        configured = {name: s for name, s in sections.items() if s.get(channel_module(name).SECRET)}
        wanted = tuple(str(r).strip() for r in (values.get("on_failure") or ()) if str(r).strip())
        return cls(settings.env_name, configured, float(values.get("timeout_seconds") or DEFAULT_TIMEOUT),
                   int(DEFAULT_RETRIES if values.get("retries") is None else values["retries"]),
                   float(values.get("deadline_seconds") or DEFAULT_DEADLINE), wanted)

    @property
    def channels(self) -> list[str]:
        return [name for name in CHANNELS if name in self.sections]

    def pages_on_failure(self, runbook_id: str) -> bool:
        """Is ``runbook_id`` named in ``on_failure`` (or is it the explicit word ``all``)?"""
        return bool(self.channels) and (runbook_id in self.on_failure or ALL in self.on_failure)

    def severity(self) -> str:
        return (self.sections.get("pagerduty") or {}).get("severity") or DEFAULT_SEVERITY

    def policy(self) -> Any:
        from aep_ops.incident.notify_http import Policy

        return Policy(timeout=self.timeout, retries=self.retries, deadline=self.deadline)


def channel_module(name: str) -> Any:
    """aep_ops.incident.notify_<name>: NAME, SECRET (its secret's key) and attempt_for()."""
    return importlib.import_module(f"{__package__}.notify_{name}")


def dedup_key(env: str, runbook_id: str) -> str:
    """The alert of ``runbook_id`` on ``env``: PagerDuty's dedup_key, OpsGenie's alias."""
    return f"aep-ops/{env}/{runbook_id}"


def first_line(text: str | None) -> str:
    lines = [line.strip() for line in redact(text or "").splitlines() if line.strip()]
    return lines[0] if lines else ""


def dispatch(settings: Any, notice: Notice, channels: list[str] | None = None, *, cfg: NotifyConfig | None = None,
             origin: str = "incident.notify") -> list[Outcome]:
    """Send ``notice`` to ``channels`` (default: every configured one) side by side; log, audit and
    count each outcome, note open and resolved pages. Never raises."""
    cfg = cfg or NotifyConfig.from_settings(settings)
    names = [c for c in (channels or cfg.channels) if c in cfg.sections]
    outcomes: dict[str, Outcome] = {}
    secrets = {}
    for name in names:  # secrets resolved here: registered for masking before any thread runs
        module = channel_module(name)
        try:
            secrets[name] = settings.secret(cfg.sections[name][module.SECRET])
        except Exception as exc:  # noqa: BLE001 - an unresolvable secret is one failed channel
            outcomes[name] = Outcome(name, False, f"{module.SECRET}: {redact(str(exc))[:200]}")
    notice = redact_obj(notice)  # masked now that every value it could hold is known: nothing leaves unmasked
    attempts = {}
    for name, secret in secrets.items():
        try:
            attempts[name] = channel_module(name).attempt_for(notice, cfg.sections[name], secret)
        except Exception as exc:  # noqa: BLE001 - a bad section is one failed channel
            outcomes[name] = Outcome(name, False, redact(f"{type(exc).__name__}: {exc}")[:200])
    outcomes.update(_send_all(attempts, cfg.policy()))
    ordered = [outcomes[name] for name in names]
    for outcome in ordered:
        _report(settings, notice, outcome, origin)
    _safely("metrics", _count, settings, ordered)
    _safely("state", _note_pages, settings, notice, ordered)
    return ordered


def _send_all(attempts: dict[str, Any], policy: Any) -> dict[str, Outcome]:
    from concurrent.futures import ThreadPoolExecutor

    from aep_ops.incident.notify_http import deliver

    if not attempts:
        return {}
    with ThreadPoolExecutor(max_workers=len(attempts), thread_name_prefix="notify") as pool:
        futures = {name: pool.submit(deliver, attempt, policy) for name, attempt in attempts.items()}
        done = {name: future.result() for name, future in futures.items()}
    return {name: Outcome(name, d.ok, d.why, d.attempts, d.seconds) for name, d in done.items()}


def _report(settings: Any, notice: Notice, outcome: Outcome, origin: str) -> None:
    fields = {"channel": outcome.channel, "action": notice.action, "key": notice.key, "attempts": outcome.attempts,
              "seconds": round(outcome.seconds, 3)}
    if outcome.ok:
        log.info("notify.sent", **fields)
    else:
        log.warning("notify.failed", error=redact(outcome.why), **fields)
    try:
        audit(settings.state_dir, f"{origin}:{notice.action}", target=f"{outcome.channel}@{notice.env}",
              args={"key": notice.key, "summary": notice.summary, "runbook": notice.runbook,
                    "run_id": notice.run_id, "attempts": outcome.attempts},
              result="sent" if outcome.ok else f"failed: {redact(outcome.why)}")
    except Exception as exc:  # noqa: BLE001 - an audit log that cannot be written is logged, not raised
        log.warning("notify.audit_failed", error=redact(f"{type(exc).__name__}: {exc}"))


def _count(settings: Any, outcomes: list[Outcome]) -> None:
    from aep_ops.metrics import notifications

    notifications.record(settings, [(o.channel, o.ok) for o in outcomes])


def _note_pages(settings: Any, notice: Notice, outcomes: list[Outcome]) -> None:
    from aep_ops.incident import notify_state

    delivered = [o.channel for o in outcomes if o.ok]
    if notice.action == "trigger" and delivered:
        notify_state.opened(settings, notice.key, delivered, run_id=notice.run_id, runbook=notice.runbook)
    elif notice.action == "resolve" and delivered:
        notify_state.closed(settings, notice.key, delivered)


def _safely(what: str, work: Any, *args: Any) -> None:
    try:
        work(*args)
    except Exception as exc:  # noqa: BLE001 - bookkeeping never fails a notification, nor a run
        log.warning("notify.bookkeeping_failed", part=what, error=redact(f"{type(exc).__name__}: {exc}"))


def check_config(cfg: NotifyConfig) -> None:
    """Refuse what would page nobody or the wrong people, before anything is sent."""
    if not cfg.channels:
        raise ConfigError(f"no notification channel is configured for {cfg.env}: set"
                          f" environments.{cfg.env}.notify.pagerduty.routing_key, .opsgenie.api_key"
                          " or .slack.webhook")


# --- the run hook's part (aep_ops/incident/run_hooks.py) -------------------------------------

PAGE_ON = ("failed", "verification_failed")  # not refused (bad input) nor interrupted (someone stopped it)


def after_run(settings: Any, runbook_id: str, run_id: str, status: str, error: str | None) -> list[Outcome]:
    """Page for a failed run of a runbook named in ``notify.on_failure``; resolve that page when a
    later run of it succeeds on the same environment (only if one is open). Never raises."""
    cfg = NotifyConfig.from_settings(settings)
    if runbook_id == "incident.notify" or not cfg.pages_on_failure(runbook_id):
        return []
    key, env = dedup_key(settings.env_name, runbook_id), settings.env_name
    command = f"inv runs.show {run_id}"
    if status in PAGE_ON:
        why = first_line(error) or status
        summary = f"{runbook_id} {status.replace('_', ' ')} on {env} (run {run_id}): {why}"
        notice = Notice("trigger", key, env, summary, cfg.severity(), runbook_id, run_id, command, "runbook failure",
                        details={"runbook": runbook_id, "env": env, "run_id": run_id, "status": status,
                                 "error": why, "next": command})
        return dispatch(settings, notice, cfg=cfg, origin="notify.on_failure")
    if status == "succeeded":
        from aep_ops.incident import notify_state

        open_on = [c for c in notify_state.open_channels(settings, key) if c in cfg.sections]
        if open_on:
            notice = Notice("resolve", key, env, f"{runbook_id} succeeded on {env} (run {run_id})",
                            cfg.severity(), runbook_id, run_id, command, "runbook failure")
            return dispatch(settings, notice, open_on, cfg=cfg, origin="notify.on_failure")
    return []
