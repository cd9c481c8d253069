"""Messages to Slack through its Web API (``chat.postMessage`` in a thread: a ``response_url``
takes only 5 posts in 30 minutes). Every text is masked before it leaves, cut to a readable
length, and escaped as Slack asks (&, <, >). A failed post is logged, never raised: a run's
outcome does not depend on the chat being reachable. Retries are bounded (429 and connection)."""

from __future__ import annotations

from typing import Any

from aep_ops.base.log import get_logger
from aep_ops.base.redact import redact

log = get_logger(__name__)
MAX_TEXT = 3500


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str, more: str = "") -> str:
    """``text`` as a code block, masked and cut to MAX_TEXT characters (``more`` says where the rest is)."""
    text = redact(text).rstrip()
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "\n... (cut" + (f"; {more}" if more else "") + ")"
    return f"```{escape(text)}```" if text else ""


def plain(text: str) -> str:
    return escape(redact(text))


class Poster:
    def __init__(self, token: str, base_url: str, timeout: float = 10.0) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

        self.client = WebClient(token=token, base_url=base_url, timeout=int(timeout),
                                retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2),
                                                RateLimitErrorRetryHandler(max_retry_count=2)])

    def post(self, channel: str, text: str, *, thread_ts: str | None = None,
             blocks: list[dict] | None = None) -> str | None:
        """Post (already escaped) ``text``; the message's ts, or None when it could not be posted."""
        answer = self._call("chat_postMessage", channel=channel, text=redact(text), thread_ts=thread_ts,
                            blocks=blocks, unfurl_links=False, unfurl_media=False)
        return answer.get("ts") if answer else None

    def update(self, channel: str, ts: str, text: str) -> None:
        self._call("chat_update", channel=channel, ts=ts, text=redact(text))

    def whisper(self, channel: str, user: str, text: str) -> None:
        """A reply only the asker sees (help, refusals, listings)."""
        self._call("chat_postEphemeral", channel=channel, user=user, text=redact(text))

    def group_members(self, group_id: str) -> list[str]:
        """Raises on any failure: the caller fails closed."""
        return list(self.client.usergroups_users_list(usergroup=group_id)["users"])

    def _call(self, method: str, **args: Any) -> Any:
        try:
            return getattr(self.client, method)(**{k: v for k, v in args.items() if v is not None})
        except Exception as exc:  # noqa: BLE001 - reported in the log; the run goes on
            log.warning("chatops.post_failed", method=method, error=redact(str(exc))[:300])
            return None
