"""Who is asking: a Slack user is ``TEAM_ID/USER_ID``, never a name (a display name can be
changed to anyone's: errbot#1421). User groups are resolved through ``usergroups.users.list``
with the bot token, kept at most ``usergroup_cache_seconds``, and fail closed: a group that
cannot be resolved grants nothing, and the reason says so."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

ID = re.compile(r"[A-Z][A-Z0-9]{2,20}")
MEMBER = re.compile(r"(?P<team>[A-Z][A-Z0-9]{2,20})/(?P<id>[A-Z][A-Z0-9]{2,20})")


@dataclass(frozen=True)
class Identity:
    team_id: str
    user_id: str

    def __str__(self) -> str:
        return f"slack:{self.team_id}/{self.user_id}"

    @property
    def key(self) -> str:
        return f"{self.team_id}/{self.user_id}"

    @classmethod
    def of(cls, team_id: Any, user_id: Any) -> "Identity | None":
        """None unless both ids look like Slack ids (a request without them is not a person)."""
        if isinstance(team_id, str) and isinstance(user_id, str) and ID.fullmatch(team_id) and ID.fullmatch(user_id):
            return cls(team_id, user_id)
        return None


def is_group(member: str) -> bool:
    match = MEMBER.fullmatch(member)
    return bool(match and match.group("id").startswith("S"))


class GroupResolver:
    """Members of Slack user groups, cached for ``ttl`` seconds; ``fetch(group_id)`` returns the
    user ids or raises. Entries that cannot be fetched are not cached: the next command asks again."""

    def __init__(self, fetch: Callable[[str], list[str]], ttl: float) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def members(self, group: str) -> frozenset[str]:
        """``TEAM/USER`` keys of the group's members; raises LookupError (with why) when unknown."""
        with self._lock:
            fetching = self._fetching.setdefault(group, threading.Lock())
        with fetching:  # one lookup per group at a time: commands arriving together share its answer
            return self._members(group)

    def _members(self, group: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(group)
            if cached is not None and now - cached[0] < self._ttl:
                return cached[1]
        team, _, group_id = group.partition("/")
        try:
            users = self._fetch(group_id)
        except Exception as exc:  # noqa: BLE001 - any failure means: this group grants nothing now
            with self._lock:
                self._cache.pop(group, None)
            raise LookupError(f"user group {group} could not be resolved ({_why(exc)})") from None
        found = frozenset(f"{team}/{u}" for u in users if isinstance(u, str))
        with self._lock:
            self._cache[group] = (now, found)
        return found


def _why(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    error = response.get("error") if hasattr(response, "get") else None
    return str(error or type(exc).__name__)
