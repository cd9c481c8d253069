"""Who may do what, per environment, from ``environments.ENV.chatops.roles``.

Roles are ordered: a viewer runs read-only runbooks and reads runs; an operator also runs
changing runbooks and approves (or denies) other people's requests; an admin also runs and
approves the runbooks whose front matter says ``chat: admin``. Anyone not named holds no role
and may do nothing: an empty or missing list never means "everyone"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aep_ops.base.errors import AepError, ConfigError
from aep_ops.chatops.identity import MEMBER, GroupResolver, Identity, is_group

ROLES = ("viewer", "operator", "admin")


class Denied(AepError):
    """The asker's role does not allow what was asked (the reason names role, environment and need)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    role: str | None
    reason: str


def check_members(settings: Any) -> None:
    """Every role member of the environment is a Slack identity (TEAM/USER or TEAM/SUBTEAM): a
    name or a typo would otherwise silently grant nothing (or, keyed by name, the wrong person)."""
    for role in ROLES:
        for member in ((settings.env.get("chatops") or {}).get("roles") or {}).get(role) or []:
            if not MEMBER.fullmatch(str(member)):
                raise ConfigError(f"environments.{settings.env_name}.chatops.roles.{role}: {member!r} is not"
                                  " TEAM_ID/USER_ID or TEAM_ID/SUBTEAM_ID (ids, never names)")


def role_of(settings: Any, who: Identity, groups: GroupResolver) -> tuple[str | None, list[str]]:
    """The highest role ``who`` holds in the environment, and notes on groups that could not be
    resolved (they granted nothing)."""
    roles = (settings.env.get("chatops") or {}).get("roles") or {}
    notes: list[str] = []
    for role in reversed(ROLES):
        for member in roles.get(role) or []:
            if member == who.key:
                return role, notes
            if is_group(member):
                try:
                    if who.key in groups.members(member):
                        return role, notes
                except LookupError as exc:
                    notes.append(f"{exc}: it grants nothing")
    return None, notes


def decide(settings: Any, who: Identity, groups: GroupResolver, *, needs: str, what: str) -> Decision:
    """May ``who`` do ``what``, which needs the role ``needs``, in this environment?"""
    role, notes = role_of(settings, who, groups)
    holds = f"{who} is {role} on {settings.env_name}" if role else f"{who} holds no role on {settings.env_name}"
    allowed = role is not None and ROLES.index(role) >= ROLES.index(needs)
    reason = f"{holds}; {what} needs {needs}" + "".join(f"; {n}" for n in notes)
    return Decision(allowed, role, reason)


def needed_role(rb: Any, chat: Any) -> str:
    """The role a runbook needs: admin for ``chat: admin``, operator to change, viewer to look."""
    if chat == "admin":
        return "admin"
    return "operator" if rb.mutating else "viewer"
