"""Step deadlines and bounded retries.

A deadline is enforced with SIGALRM, which only works in the main thread; elsewhere
(a chat-ops worker thread) the step runs without it and relies on the per-command
timeouts its executors already apply. Retries are bounded by count and back off.
"""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

from aep_ops.base.errors import StepFailed

T = TypeVar("T")


class StepTimeout(StepFailed):
    """A step ran past its declared timeout."""


@contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise StepTimeout(f"{what} did not finish within its {seconds:g}s timeout")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def with_retries(func: Callable[[], T], *, retries: int, retry_on: tuple[type[BaseException], ...],
                 on_retry: Callable[[int, BaseException], None], base_delay: float = 1.0,
                 max_delay: float = 30.0) -> T:
    """Call ``func``; on an exception in ``retry_on`` try again up to ``retries`` more times."""
    attempt = 0
    while True:
        try:
            return func()
        except retry_on as exc:
            if attempt >= retries:
                raise
            attempt += 1
            on_retry(attempt, exc)
            time.sleep(min(max_delay, base_delay * 2 ** (attempt - 1)))
