"""What logs.ship shipped, one JSON line per object (key, size, checksum, lines, first and last
timestamps), in ``STATE_DIR/logs/shipped-ENV.jsonl``. Written before the file is marked shipped
and never twice for a key, so a run killed in between records it once on its rerun."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from aep_ops.base.log import append_whole


class Manifest:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._keys = set()
        if self.path.exists():
            with self.path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        self._keys.add(json.loads(line)["key"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut by a full disk: the rerun records that key again

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if entry["key"] in self._keys:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                append_whole(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._keys.add(entry["key"])


def manifest_path(settings: Any) -> Path:
    return settings.state_dir / "logs" / f"shipped-{settings.env_name}.jsonl"
