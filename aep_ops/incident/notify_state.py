"""Which alerts aep-ops has open, and on which channels: STATE_DIR/notify/open.json.

A runbook's failure opens its key (``aep-ops/prod/dr.drill``) on the channels that took the page;
its next success resolves the key on those channels only, and a channel that could not be told
stays open for the success after. A success of a runbook with nothing open sends nothing. The
file is replaced atomically (aep_ops.base.atomicfile) under a lock (two runbooks may end at
once); one that cannot be parsed counts as empty (nothing is resolved rather than the run failing).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator

from aep_ops.base.atomicfile import replace_file


def state_file(settings: Any) -> Path:
    return settings.state_dir / "notify" / "open.json"


def load(settings: Any) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(state_file(settings).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def open_channels(settings: Any, key: str) -> list[str]:
    entry = load(settings).get(key) or {}
    channels = entry.get("channels") if isinstance(entry, dict) else None
    return [str(c) for c in channels] if isinstance(channels, list) else []


def opened(settings: Any, key: str, channels: list[str], **info: Any) -> None:
    with _locked(settings):
        data = load(settings)
        entry = data.get(key) if isinstance(data.get(key), dict) else {}
        known = [c for c in entry.get("channels") or [] if c not in channels]
        data[key] = {**entry, **info, "channels": sorted({*known, *channels}), "since": entry.get("since") or
                     time.time(), "last": time.time()}
        _write(settings, data)


def closed(settings: Any, key: str, channels: list[str]) -> None:
    with _locked(settings):
        data = load(settings)
        entry = data.get(key)
        if not isinstance(entry, dict):
            return
        left = [c for c in entry.get("channels") or [] if c not in channels]
        if left:
            data[key] = {**entry, "channels": left}
        else:
            data.pop(key, None)
        _write(settings, data)


def _write(settings: Any, data: dict[str, Any]) -> None:
    replace_file(state_file(settings), (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


@contextlib.contextmanager
def _locked(settings: Any) -> Iterator[None]:
    directory = settings.state_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "notify-open.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
