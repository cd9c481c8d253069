"""The chat service's settings (``chatops:`` at the top level) with their defaults, checked
before the service listens: a missing secret or a bad address is exit 2 with what to set."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aep_ops.base.errors import ConfigError

DEFAULTS = {"api_url": "https://slack.com/api/", "listen": "127.0.0.1:3000", "command": "/ops", "workers": 4,
            "queue": 16, "approval_minutes": 15, "rate_limit_per_minute": 10, "max_body_bytes": 65536,
            "usergroup_cache_seconds": 300}


@dataclass(frozen=True)
class ChatConfig:
    signing_secret: str
    bot_token: str
    api_url: str
    host: str
    port: int
    command: str
    default_env: str | None
    workers: int
    queue: int
    approval_seconds: int
    rate_limit_per_minute: int
    max_body_bytes: int
    usergroup_cache_seconds: int


def load_chat_config(settings: Any) -> ChatConfig:
    def get(key: str) -> Any:
        return settings.get(f"chatops.{key}", DEFAULTS.get(key))

    secrets = {}
    for key, example in (("signing_secret", "env:SLACK_SIGNING_SECRET"), ("bot_token", "env:SLACK_BOT_TOKEN")):
        ref = get(key)
        if ref is None:
            raise ConfigError(f"chatops.{key} is not set: set it to a secret reference, e.g. {example}"
                              " (and give the variable with --env-file)")
        secrets[key] = settings.secret(ref)
    host, _, port = str(get("listen")).rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"chatops.listen {get('listen')!r}: expected HOST:PORT, e.g. 127.0.0.1:3000")
    command = str(get("command"))
    if not command.startswith("/") or len(command) < 2 or " " in command:
        raise ConfigError(f"chatops.command {command!r}: a slash command, e.g. /ops")
    api_url = str(get("api_url"))
    if not api_url.startswith(("https://", "http://")):
        raise ConfigError(f"chatops.api_url {api_url!r}: expected an http(s) URL, e.g. https://slack.com/api/")
    return ChatConfig(signing_secret=secrets["signing_secret"], bot_token=secrets["bot_token"],
                      api_url=api_url if api_url.endswith("/") else api_url + "/", host=host.strip("[]"),
                      port=int(port), command=command, default_env=get("default_env"), workers=int(get("workers")),
                      queue=int(get("queue")), approval_seconds=60 * int(get("approval_minutes")),
                      rate_limit_per_minute=int(get("rate_limit_per_minute")),
                      max_body_bytes=int(get("max_body_bytes")),
                      usergroup_cache_seconds=int(get("usergroup_cache_seconds")))


def exposed_runbooks(settings: Any) -> dict[str, tuple[Any, Any]]:
    """Runbook id -> (Runbook, front matter ``chat``) of the runbooks chat may run: those whose
    Markdown says ``chat: true`` or ``chat: admin``; any other is not offered at all."""
    from aep_ops.engine.markdown import find_doc, parse
    from aep_ops.engine.runbook import load_all
    from aep_ops.tasks.plugins import plugin_modules

    found = {}
    for rb_id, rb in sorted(load_all(plugin_modules()).items()):
        path = find_doc(rb_id, settings.get("runbook_dirs") or ())
        chat = parse(path).front.get("chat") if path else None
        if chat is True or chat == "admin":
            found[rb_id] = (rb, chat)
    return found
