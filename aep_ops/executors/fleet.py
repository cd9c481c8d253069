"""Run one command on many targets with bounded parallelism and one global deadline.

fabric's ThreadingGroup starts a thread per host with no cap and joins without a
timeout, so one hung host holds the whole run; here the pool is bounded and the result
is returned at the deadline whatever the stragglers do.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Sequence

from aep_ops.errors import AepError, CommandTimeout, UsageError
from aep_ops.executors.base import CommandResult, Executor, FleetResult, HostOutcome


def run_on_all(executors: Sequence[Executor], argv: Sequence[str], *, parallel: int, timeout: float) -> FleetResult:
    """Run argv on every executor, at most ``parallel`` at a time, all within ``timeout``
    seconds from now. Outcomes keep the order of ``executors``; a host that has not
    answered by the deadline (still running, or never started) is reported unreachable."""
    if parallel < 1:
        raise UsageError(f"parallel must be at least 1, not {parallel}")
    deadline = time.monotonic() + timeout
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="aep-fleet")
    try:
        futures: list[Future[CommandResult]] = [
            pool.submit(_run_before, ex, argv, deadline) for ex in executors
        ]
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        # Never wait for stragglers: each ends by its command deadline (or connect timeout).
        pool.shutdown(wait=False, cancel_futures=True)
    return FleetResult(tuple(_outcome(ex, fut, timeout) for ex, fut in zip(executors, futures)))


def _run_before(executor: Executor, argv: Sequence[str], deadline: float) -> CommandResult:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed before the command could start")
    return executor.run(argv, timeout=remaining)


def _outcome(executor: Executor, future: Future[CommandResult], timeout: float) -> HostOutcome:
    if not future.done() or future.cancelled():
        return HostOutcome(executor.target, error=f"{executor.target}: no answer within {timeout:g}s")
    exc = future.exception()
    if exc is None:
        return HostOutcome(executor.target, result=future.result())
    if isinstance(exc, CommandTimeout):  # it ran into the global deadline; say so the same way
        return HostOutcome(executor.target, error=f"{executor.target}: no answer within {timeout:g}s ({exc})")
    if isinstance(exc, TimeoutError):
        return HostOutcome(executor.target, error=f"{executor.target}: no answer within {timeout:g}s")
    if isinstance(exc, AepError):
        return HostOutcome(executor.target, error=str(exc))
    return HostOutcome(executor.target, error=f"{executor.target}: {type(exc).__name__}: {exc}")
