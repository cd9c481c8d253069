"""A Slack incoming webhook (slack_sdk's WebhookClient): one message per page, acknowledgement or
resolution. slack_sdk's own retry handlers are off (``retry_handlers=[]``): the bounded policy of
aep_ops.incident.notify_http retries 429 (Retry-After, capped), 5xx and connection errors alike
for every channel. Its logger is silenced: at DEBUG it writes the webhook URL, which is the credential
(redaction would mask it, but it need not be written at all), and each failed attempt would be
an ERROR line of its own; the one warning per failed delivery is aep_ops.incident.notify's."""

from __future__ import annotations

import logging
from typing import Any, Callable

from aep_ops.incident.notify_http import Answer, short

NAME = "slack"
SECRET = "webhook"
ICON = {"trigger": ":rotating_light:", "acknowledge": ":eyes:", "resolve": ":white_check_mark:"}
WORD = {"trigger": "PAGE", "acknowledge": "acknowledged", "resolve": "resolved"}
TEXT_MAX = 3000


def text(notice: Any) -> str:
    head = f"{ICON[notice.action]} [aep-ops {notice.env}] {WORD[notice.action]}: {notice.summary or notice.key}"
    tail = f" (key `{notice.key}`)"
    if notice.command:
        tail += f" - `{notice.command}`"
    return (head if len(head) <= TEXT_MAX else head[:TEXT_MAX - 1] + "\u2026") + tail


def attempt_for(notice: Any, section: dict[str, Any], secret: str) -> Callable[[float], Answer]:
    message = text(notice)

    def attempt(timeout: float) -> Answer:
        from slack_sdk.webhook import WebhookClient

        quiet = logging.getLogger("aep_ops.incident.notify_slack.sdk")
        quiet.setLevel(logging.CRITICAL)  # its errors are ours to log, once, redacted
        quiet.propagate = False
        if secret.split(":", 1)[0].lower() not in ("http", "https"):
            raise ValueError("the Slack webhook must be an http:// or https:// URL")
        client = WebhookClient(secret, timeout=timeout, retry_handlers=[], logger=quiet)  # type: ignore[arg-type]
        response = client.send(text=message)
        headers = {k.lower(): v for k, v in (response.headers or {}).items()}
        after = headers.get("retry-after")
        after = after[0] if isinstance(after, list) else after
        return Answer(response.status_code, after, "" if response.status_code == 200 else short(response.body or ""))

    return attempt
