"""The Bolt app: listeners that acknowledge at once and hand the work to the service's pool
(a listener that looks anything up before its ack risks Slack's 3-second operation_timeout:
bolt-python#335). ``authorize`` answers from the configuration, so no request waits on
Slack's auth.test."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from aep_ops.base.redact import redact
from aep_ops.chatops.identity import Identity
from aep_ops.chatops.service import Asker, ChatOps

MAX_TEXT = 2000  # of a command's text
BUSY = "busy: every worker is taken and the queue is full; try again in a minute"


def build_app(svc: ChatOps) -> Any:
    from slack_bolt import App
    from slack_bolt.authorization import AuthorizeResult
    from slack_sdk import WebClient

    from aep_ops.chatops import flows
    from aep_ops.chatops.commands import Command

    config = svc.config

    def authorize(enterprise_id: Any, team_id: Any, logger: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=config.bot_token)

    app = App(signing_secret=config.signing_secret, authorize=authorize, token_verification_enabled=False,
              client=WebClient(base_url=config.api_url), process_before_response=False,
              raise_error_for_unhandled_request=False)

    @app.command(config.command)
    def on_command(ack: Any, body: dict) -> None:
        who = Identity.of(body.get("team_id"), body.get("user_id"))
        if who is None:
            return ack(text="error: this request names no Slack team and user")
        text = str(body.get("text") or "")
        if len(text) > MAX_TEXT:
            return ack(text=f"error: the command is {len(text)} characters long; at most {MAX_TEXT}")
        asker = Asker(who, str(body.get("channel_id") or ""), text)
        if not svc.submit(svc.on_command, asker):
            return ack(text=BUSY)
        ack(response_type="ephemeral", text=redact(f"on it: `{config.command} {asker.text}`")[:300])

    @app.action(re.compile(r"^ops_(approve|deny)$"))
    def on_button(ack: Any, body: dict, action: dict) -> None:
        ack()
        user = body.get("user") or {}
        who = Identity.of(user.get("team_id") or (body.get("team") or {}).get("id"), user.get("id"))
        channel = str((body.get("channel") or {}).get("id") or "")
        value = str(action.get("value") or "")
        if who is None or not channel:
            return
        run_id, _, args_hash = value.partition(":")
        verb = "approve" if action.get("action_id") == "ops_approve" else "deny"
        asker = Asker(who, channel, f"{verb} {run_id} (button)")
        command = Command(verb, [run_id])
        handler = (lambda: flows.approve(svc, asker, command, args_hash or None)) if verb == "approve" \
            else (lambda: flows.deny(svc, asker, command))
        if not svc.submit(svc.guarded, asker, handler):
            svc.whisper(asker, BUSY)

    return app


def sender(body: bytes) -> str | None:
    """``TEAM/USER`` of a slash command or an interaction payload (for the rate limit), or None."""
    try:
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=100)
    except ValueError:
        return None
    if "payload" in form:
        try:
            payload = json.loads(form["payload"][0])
        except ValueError:
            return None
        user = payload.get("user") or {}
        who = Identity.of(user.get("team_id") or (payload.get("team") or {}).get("id"), user.get("id"))
    else:
        who = Identity.of((form.get("team_id") or [None])[0], (form.get("user_id") or [None])[0])
    return who.key if who else None
