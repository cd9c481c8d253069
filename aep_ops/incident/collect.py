"""Run every source at once, each within the diagnosis's deadline, and return at the deadline
whatever a straggler does.

Why not ``with ThreadPoolExecutor(...)``: leaving that block joins every worker, a hung one
included, so one host that never sends its SSH banner would hold the whole diagnosis. Here the
pool is shut down without waiting; a source still running at the deadline is reported as timed
out and told to ``abort()`` (an SSH source closes its socket, which ends paramiko's banner wait
at once), so its thread ends within a moment, not at some library's default timeout.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Protocol, Sequence

from aep_ops.base.errors import AepError
from aep_ops.base.redact import redact
from aep_ops.incident.model import ERROR, TIMEOUT, SourceResult

ABORT_GRACE = 0.5  # seconds an aborted source gets to end before the collector stops looking


class Source(Protocol):
    name: str

    def collect(self, deadline_at: float) -> SourceResult:
        """Read the source; every blocking call ends by ``deadline_at`` (time.monotonic())."""

    def abort(self) -> None:
        """Called from another thread at the deadline: make ``collect`` return now."""


def collect_all(sources: Sequence[Source], *, deadline: float, parallel: int,
                progress: Callable[[SourceResult], None] | None = None) -> list[SourceResult]:
    """One SourceResult per source, in the order given, all within ``deadline`` seconds from now."""
    if not sources:
        return []
    started = time.monotonic()
    deadline_at = started + deadline
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(sources))), thread_name_prefix="aep-diagnose")
    futures: list[Future[SourceResult]] = []
    try:
        for source in sources:
            context = contextvars.copy_context()
            futures.append(pool.submit(context.run, _timed, source, started, deadline_at))
        pending = set(futures)
        while pending:
            left = deadline_at - time.monotonic()
            if left <= 0:
                break
            done, pending = wait(pending, timeout=left, return_when=FIRST_COMPLETED)
            for future in done:
                if progress is not None and future.exception() is None:
                    progress(future.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    late = [(s, f) for s, f in zip(sources, futures) if not f.done()]
    for source, _ in late:
        try:
            source.abort()
        except Exception:  # noqa: BLE001 - aborting is best effort; the source is reported as late anyway
            pass
    if late:
        wait([f for _, f in late], timeout=ABORT_GRACE)
    late_ids = {id(f) for _, f in late}
    return [_result(s, f, deadline, id(f) in late_ids) for s, f in zip(sources, futures)]


def _timed(source: Source, started: float, deadline_at: float) -> SourceResult:
    result = source.collect(deadline_at)
    result.elapsed = time.monotonic() - started
    return result


def _result(source: Source, future: Future[SourceResult], deadline: float, late: bool) -> SourceResult:
    if late or future.cancelled():  # what an aborted source says after the deadline is its abort
        return SourceResult(source.name, TIMEOUT, elapsed=deadline, error=f"no answer within {deadline:g}s")
    exc = future.exception()
    if exc is None:
        return future.result()
    why = str(exc) if isinstance(exc, AepError) else f"{type(exc).__name__}: {exc}"
    return SourceResult(source.name, ERROR, error=redact(why))
