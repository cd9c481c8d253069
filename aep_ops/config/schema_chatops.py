"""The configuration of the Slack chat front door (``chatops:`` at the top level: the service;
in an environment: who may do what there). Kept apart from schema.py so each stays small; the
defaults are in aep_ops.chatops.service_config."""

from __future__ import annotations

from aep_ops.config.schema import Field, ListOf, Section

MEMBERS = "Slack identities, TEAM_ID/USER_ID (e.g. T0123ABCD/U0456EFGH) or a user group TEAM_ID/SUBTEAM_ID (S...)"

ENVIRONMENT_CHATOPS = Section({
    "roles": Section({
        "viewer": ListOf(Field(str), f"{MEMBERS}: run read-only runbooks, list runs"),
        "operator": ListOf(Field(str), f"{MEMBERS}: also run changing runbooks, approve others' requests"),
        "admin": ListOf(Field(str), f"{MEMBERS}: also run and approve the runbooks whose front matter says"
                                    " chat: admin"),
    }, help="who may do what in this environment from chat; anyone not named may do nothing"),
})

TOP_CHATOPS = Section({
    "signing_secret": Field("secret", "the Slack app's signing secret (e.g. env:SLACK_SIGNING_SECRET)"),
    "bot_token": Field("secret", "the bot token that posts replies and reads user groups (xoxb-...)"),
    "api_url": Field(str, "Slack Web API base URL (default https://slack.com/api/)"),
    "listen": Field(str, "HOST:PORT the service listens on (default 127.0.0.1:3000; TLS ends in front of it)"),
    "command": Field(str, "the slash command (default /ops)"),
    "default_env": Field(str, "environment of a command without --env (default: none, --env is required)"),
    "workers": Field(int, "commands carried out at once (default 4)", minimum=1, maximum=32),
    "queue": Field(int, "commands that may wait for a worker; more are refused as busy (default 16)",
                   minimum=0, maximum=1000),
    "approval_minutes": Field(int, "how long a production request waits for approval (default 15)",
                              minimum=1, maximum=24 * 60),
    "rate_limit_per_minute": Field(int, "commands one person may send per minute (default 10)",
                                   minimum=1, maximum=600),
    "max_body_bytes": Field(int, "larger requests are refused with 413 (default 65536)",
                            minimum=1024, maximum=2**20),
    "usergroup_cache_seconds": Field(int, "how long a user group's members are trusted (default 300)",
                                     minimum=0, maximum=300),
})

ENVIRONMENT_FIELDS = {"chatops": ENVIRONMENT_CHATOPS}
TOP_FIELDS = {"chatops": TOP_CHATOPS}
