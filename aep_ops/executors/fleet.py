"""Bounded fan-out with one global deadline: ``map_bounded`` (any function over many items)
and ``run_on_all`` (one command on many executors) built on it.

fabric's ThreadingGroup starts a thread per host with no cap and joins without a
timeout, so one hung host holds the whole run; here the pool is bounded and the result
is returned at the deadline whatever the stragglers do.
"""

from __future__ import annotations

import contextvars
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Sequence, TypeVar

from aep_ops.base.errors import AepError, CommandTimeout, UsageError
from aep_ops.executors.base import CommandResult, Executor, FleetResult, HostOutcome

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Answer(Generic[R]):
    """One item's answer in a fan-out: its value, or the exception it raised; ``late`` when it
    had not answered by the deadline (still running, or never started)."""

    value: R | None = None
    error: BaseException | None = None
    late: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def why(self) -> str:
        """Why there is no value, in one line ("" when there is one)."""
        if self.error is None:
            return ""
        return str(self.error) or type(self.error).__name__


def map_bounded(func: Callable[[T], R], items: Iterable[T], *, parallel: int,
                timeout: float | None) -> list[Answer[R]]:
    """``func(item)`` for every item, at most ``parallel`` at a time, all within ``timeout``
    seconds from now (None: wait for every one). Answers keep the order of ``items``; a
    straggler never delays them (its thread ends by its own deadline). Each call runs in a
    copy of the caller's context, so log bindings (run id, step) follow it."""
    if parallel < 1:
        raise UsageError(f"parallel must be at least 1, not {parallel}")
    items = list(items)
    if not items:
        return []
    deadline = None if timeout is None else time.monotonic() + timeout
    pool = ThreadPoolExecutor(max_workers=min(parallel, len(items)), thread_name_prefix="aep-fanout")
    try:
        futures: list[Future[R]] = [pool.submit(contextvars.copy_context().run, func, item) for item in items]
        wait(futures, timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
    finally:
        # With a deadline, never wait for stragglers: each ends by its own (a command or connect
        # timeout). Without one, wait even when interrupted: a running call may be changing a host.
        pool.shutdown(wait=deadline is None, cancel_futures=True)
    return [_answer(fut, timeout) for fut in futures]


def _answer(future: Future[Any], timeout: float | None) -> Answer[Any]:
    if not future.done() or future.cancelled():
        return Answer(error=TimeoutError(f"no answer within {timeout:g}s"), late=True)
    exc = future.exception()
    return Answer(value=future.result()) if exc is None else Answer(error=exc)


def run_on_all(executors: Sequence[Executor], argv: Sequence[str], *, parallel: int, timeout: float) -> FleetResult:
    """Run argv on every executor, at most ``parallel`` at a time, all within ``timeout``
    seconds from now. Outcomes keep the order of ``executors``; a host that has not
    answered by the deadline (still running, or never started) is reported unreachable."""
    deadline = time.monotonic() + timeout
    answers = map_bounded(lambda ex: _run_before(ex, argv, deadline), executors, parallel=parallel,
                          timeout=timeout)
    return FleetResult(tuple(_outcome(ex, answer, timeout) for ex, answer in zip(executors, answers)))


def _run_before(executor: Executor, argv: Sequence[str], deadline: float) -> CommandResult:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed before the command could start")
    return executor.run(argv, timeout=remaining)


def _outcome(executor: Executor, answer: Answer[CommandResult], timeout: float) -> HostOutcome:
    exc = answer.error
    if answer.late:
        return HostOutcome(executor.target, error=f"{executor.target}: no answer within {timeout:g}s")
    if exc is None:
        return HostOutcome(executor.target, result=answer.value)
    if isinstance(exc, CommandTimeout):  # it ran into the global deadline; say so the same way
        return HostOutcome(executor.target, error=f"{executor.target}: no answer within {timeout:g}s ({exc})")
    if isinstance(exc, TimeoutError):
        return HostOutcome(executor.target, error=f"{executor.target}: no answer within {timeout:g}s")
    if isinstance(exc, AepError):
        return HostOutcome(executor.target, error=str(exc))
    return HostOutcome(executor.target, error=f"{executor.target}: {type(exc).__name__}: {exc}")
