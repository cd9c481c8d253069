"""The incident runbooks.

Heavy imports (urllib, slack_sdk) happen inside the steps: the CLI imports this module to list tasks.
"""

from __future__ import annotations

from aep_ops.base.errors import StepFailed, UsageError, refuse_blank
from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step

# --- incident.notify: page, acknowledge or resolve by hand (aep_ops/incident/notify.py) --------------------

NOTIFY_ACTIONS = ("trigger", "acknowledge", "resolve")
NOTIFY_SEVERITIES = ("critical", "error", "warning", "info")
NOTIFY_CHANNELS = ("pagerduty", "opsgenie", "slack")
NOTIFY_KEY_MAX = 255
NOTIFY_SUMMARY_MAX = 1024


def _notice(ctx: RunContext):  # -> aep_ops.incident.notify.Notice
    from aep_ops.incident.notify import Notice

    p = ctx.params
    return Notice(p["action"], p["notice_key"], ctx.env_name, p["summary"].strip(), p["notice_severity"],
                  kind="manual", command=f"inv incident.notify --env {ctx.env_name} --action resolve"
                                         f" --key {p['notice_key']}" if p["action"] != "resolve" else "",
                  details={"env": ctx.env_name, "sent_by": "inv incident.notify"})


class NotifyChannels(Step):
    id = "notify_channels"
    title = "Choose the channels to tell"

    def check(self, ctx):
        p = ctx.params
        return Plan.unchanged(f"{p['action']} key {p['notice_key']} on {', '.join(p['notice_channels'])}",
                              channels=p["notice_channels"])


class RunNotify(Step):
    id = "run_notify"
    title = "Send the notice to every channel"
    idempotent = False  # Slack would get the message twice; PagerDuty and OpsGenie de-duplicate by key

    def check(self, ctx):
        p = ctx.params
        return Plan.change(f"{p['action']} {p['notice_key']} to {', '.join(p['notice_channels'])}")

    def apply(self, ctx, plan):
        from aep_ops.incident.notify import dispatch

        notice = _notice(ctx)
        outcomes = dispatch(ctx.settings, notice, ctx.params["notice_channels"])
        for outcome in outcomes:
            ctx.summary[outcome.channel] = outcome.line(notice)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            sent = [o.channel for o in outcomes if o.ok]
            raise StepFailed("not delivered to " + "; ".join(f"{o.channel} ({o.why})" for o in failed)
                             + (f"; delivered to {', '.join(sent)}" if sent else "; nothing was delivered"))
        return {o.channel: o.line(notice) for o in outcomes}


@runbook("incident.notify", steps=[NotifyChannels, RunNotify],
         summary="Page, acknowledge or resolve on PagerDuty, OpsGenie and Slack (one dedup key for all)",
         help={"action": "trigger, acknowledge or resolve (default trigger)",
               "summary": "what is wrong, one line (required to trigger; at most 1024 characters)",
               "key": "the alert's dedup key: PagerDuty dedup_key, OpsGenie alias (default aep-ops/ENV/manual;"
                      " a runbook's own page is aep-ops/ENV/RUNBOOK)",
               "severity": "critical, error, warning or info (default: notify.pagerduty.severity, else critical)",
               "channel": "pagerduty, opsgenie, slack, comma-separated (default: every configured one)"})
def notify(ctx: RunContext, *, action: str = "trigger", summary: str = "", key: str | None = None,
           severity: str | None = None, channel: str | None = None) -> None:
    from aep_ops.incident.notify import NotifyConfig, check_config

    action = str(action).strip().lower()
    if action not in NOTIFY_ACTIONS:
        raise UsageError(f"--action {action!r}: expected one of {', '.join(NOTIFY_ACTIONS)}")
    refuse_blank("--key", key, "give the alert's dedup key, or leave the flag out for aep-ops/ENV/manual")
    refuse_blank("--severity", severity, f"give one of {', '.join(NOTIFY_SEVERITIES)}, or leave the flag out")
    refuse_blank("--channel", channel, "name the channels, or leave the flag out for every configured one")
    if action == "trigger" and not str(summary).strip():
        raise UsageError("--summary is empty: say what is wrong, in one line; a page needs it")
    if len(str(summary)) > NOTIFY_SUMMARY_MAX:
        raise UsageError(f"--summary is {len(summary)} characters long; at most {NOTIFY_SUMMARY_MAX}")
    notice_key = str(key).strip() if key is not None else f"aep-ops/{ctx.env_name}/manual"
    if len(notice_key) > NOTIFY_KEY_MAX or not notice_key.isprintable() or any(c.isspace() for c in notice_key):
        raise UsageError(f"--key {notice_key[:60]!r}: at most {NOTIFY_KEY_MAX} printable characters, no spaces")
    if severity is not None and severity.strip().lower() not in NOTIFY_SEVERITIES:
        raise UsageError(f"--severity {severity!r}: expected one of {', '.join(NOTIFY_SEVERITIES)}")
    cfg = NotifyConfig.from_settings(ctx.settings)
    check_config(cfg)
    asked = cfg.channels
    if channel is not None:
        asked = list(dict.fromkeys(c.strip().lower() for c in channel.split(",") if c.strip()))
        unknown = [c for c in asked if c not in NOTIFY_CHANNELS]
        if unknown or not asked:
            raise UsageError(f"--channel {channel!r}: expected {', '.join(NOTIFY_CHANNELS)}, comma-separated")
        missing = [c for c in asked if c not in cfg.channels]
        if missing:
            raise UsageError(f"--channel {', '.join(missing)}: not configured for {ctx.env_name} (configured:"
                             f" {', '.join(cfg.channels)}; see environments.{ctx.env_name}.notify)")
    ctx.params.update(action=action, summary=str(summary), notice_key=notice_key, notice_channels=asked,
                      notice_severity=severity.strip().lower() if severity is not None else cfg.severity())


# --- incident.diagnose: the whole picture in one command (aep_ops/incident/diagnose.py) ----------------------


from aep_ops.incident.diagnose import CollectSources, RankFindings, WriteBundle  # noqa: E402 - its own block


@runbook("incident.diagnose", steps=[CollectSources, RankFindings, WriteBundle], read_only=True,
         summary="Diagnose an incident: hosts, application, PostgreSQL and AWS at once, findings ranked",
         help={"since": "how far back to look in logs and events, e.g. 30m, 2h (default 30m)",
               "role": "diagnose only the hosts of this role (default: every host)",
               "bundle": "write the report and the archive under this directory (default: the state"
                         " directory's reports/incidents)"})
def diagnose(ctx: RunContext, *, since: str = "30m", role: str | None = None, bundle: str | None = None) -> None:
    from aep_ops.base.timefmt import parse_span
    from aep_ops.fleet.inventory import role_flag
    from aep_ops.incident.diagnose import check_bundle_dir
    from aep_ops.incident.settings import IncidentConfig

    ctx.params.update(since_seconds=parse_span("--since", since, minimum=60, maximum=7 * 86400),
                      role=role_flag(role), bundle=check_bundle_dir(bundle),
                      config=IncidentConfig.from_settings(ctx.settings))  # derived: in memory, not journaled
