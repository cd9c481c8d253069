"""Atomic replacement, checked the way the textfile collector would hit it: a thread reads the
file as fast as it can while the test rewrites it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable


def reads_while(path: Path, rewrite: Callable[[], None]) -> list[str]:
    """Every text a reader saw of ``path`` while ``rewrite()`` ran (rewriting it many times)."""
    seen: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(path.read_text())

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        rewrite()
    finally:
        stop.set()
        thread.join()
    return seen
