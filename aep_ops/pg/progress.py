"""Progress of long work that grows something on disk: bytes done of a total, rate, ETA.

A restore writes a data directory and a backup a repository, so a background thread samples
how much is there (``dir_size``: os.scandir, bounded) and reports one readable line,
``restoring: 1.2 GiB of 4.1 GiB (29%), 180 MiB/s, ETA 16 s``. On a terminal that line is
rewritten in place (\\r) at most every ``redraw`` seconds and ended with a newline; off one
(timers, cron, chat-ops) a structured ``step.progress`` event goes to the log at a bounded
rate: when ``event_every`` seconds or ``event_step`` percent have passed since the last one,
never two within ``min_gap`` seconds, plus one at the start and one at the end.

The watcher is a context manager around the work: it stops and is joined on every way out
(an exception, Ctrl-C, the engine's Interrupted on SIGTERM, a step timeout), it is a daemon
thread so it can never keep the process alive, and nothing it does (a vanished file, an
unreadable directory, a broken terminal) is raised into the work it watches. Sampling a large
tree costs what the walk costs, so the next sample waits at least 20 times as long as the last
walk took: the thread uses at most about 5 % of one core, however many files there are.
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any, Callable

from aep_ops.base.textfmt import duration, size

MAX_ENTRIES = 2_000_000  # a walk stops counting here (a data directory has far fewer files)


def format_progress(verb: str, done: int | None, total: int | None, rate: float | None, elapsed: float, *,
                    status: str | None = None, limit: float | None = None) -> str:
    """The one line: what is known, nothing guessed (no percent without a total, no ETA without a
    rate). ``status``: what the provider says (an RDS instance's status); ``limit``: the timeout."""
    if status:
        verb = f"{verb} ({status})"
    if done is None:
        left = f", timeout in {duration(max(0.0, limit - elapsed))}" if limit else ""
        return f"{verb}: {duration(elapsed)} elapsed{left}"
    parts = [size(done)]
    if total:
        parts[0] += f" of {size(total)} ({min(100, int(100 * done / total))}%)"
    if rate is not None:
        parts.append(f"{size(rate)}/s")
    if total and rate and done < total:
        eta = (total - done) / rate
        parts.append(f"ETA {duration(eta)}" if eta >= 0.5 else "ETA <1 s")
    elif total and done >= total:
        parts.append("finishing")
    else:
        parts.append(f"{duration(elapsed)} elapsed")
    return f"{verb}: " + ", ".join(parts)


def format_done(verb_done: str, done: int | None, elapsed: float) -> str:
    """The closing line: 'restored 4.1 GiB in 23 s (180 MiB/s)'."""
    if done is None:
        return f"{verb_done} in {duration(elapsed)}"
    rate = f" ({size(done / elapsed)}/s)" if elapsed > 0 and done else ""
    return f"{verb_done} {size(done)} in {duration(elapsed)}{rate}"


def dir_size(path: str | os.PathLike[str], *, limit: int = MAX_ENTRIES) -> int | None:
    """Apparent size of the files under ``path`` (symlinks not followed); None when it cannot be
    read at all. Files that vanish mid-walk are skipped; the walk stops after ``limit`` entries."""
    total, seen, stack = 0, 0, [os.fspath(path)]
    try:
        os.stat(stack[0])
    except OSError:
        return None
    while stack and seen < limit:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


@dataclass
class Throttle:
    """What to show when, given samples (pure: the unit tests drive it with their own clock)."""

    total: int | None
    started: float
    redraw: float = 0.5
    event_every: float = 10.0
    event_step: float = 10.0
    min_gap: float = 1.0
    window: float = 5.0  # seconds of samples the rate is measured over
    samples: deque = field(default_factory=deque)
    last_draw: float | None = None
    last_event: float | None = None
    last_event_percent: float = 0.0
    events: int = 0

    def add(self, now: float, done: int | None) -> None:
        if done is None:
            return
        if self.samples:  # what was written stays written (a backup's expiry shrinks the repo at its end)
            done = max(done, self.samples[-1][1])
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()

    @property
    def done(self) -> int | None:
        return self.samples[-1][1] if self.samples else None

    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 and b1 > b0 else None

    def percent(self) -> float | None:
        done = self.done
        return min(100.0, 100.0 * done / self.total) if self.total and done is not None else None

    def should_draw(self, now: float) -> bool:
        if self.last_draw is not None and now - self.last_draw < self.redraw:
            return False
        self.last_draw = now
        return True

    def should_emit(self, now: float) -> bool:
        """The first sample, then every ``event_every`` s or ``event_step`` %, never within ``min_gap`` s."""
        pct = self.percent()
        if self.last_event is not None:
            if now - self.last_event < self.min_gap:
                return False
            stepped = pct is not None and pct - self.last_event_percent >= self.event_step
            if now - self.last_event < self.event_every and not stepped:
                return False
        self.last_event, self.events = now, self.events + 1
        self.last_event_percent = pct if pct is not None else self.last_event_percent
        return True

    def line(self, verb: str, now: float, *, status: str | None = None, limit: float | None = None) -> str:
        return format_progress(verb, self.done, self.total, self.rate(), now - self.started, status=status,
                               limit=limit)

    def fields(self, now: float) -> dict[str, Any]:
        rate, pct, done = self.rate(), self.percent(), self.done
        eta = (self.total - done) / rate if rate and self.total and done is not None and done < self.total else None
        return {"bytes_done": done, "bytes_total": self.total,
                "percent": None if pct is None else round(pct, 1),
                "rate_bytes_per_second": None if rate is None else round(rate),
                "eta_seconds": None if eta is None else round(eta, 1),
                "elapsed_seconds": round(now - self.started, 1)}


class Watch:
    """``with Watch("restoring", lambda: dir_size(d), total, out=stderr): run()`` (see the module doc)."""

    def __init__(self, verb: str, measure: Callable[[], int | None],
                 total: int | None | Callable[[], int | None], *,
                 verb_done: str | None = None, out: IO[str] | None = None, tty: bool | None = None,
                 sample: float = 0.25, redraw: float = 0.5, event_every: float = 10.0,
                 event_step: float = 10.0, min_gap: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 status: Callable[[], str | None] | None = None, limit: float | None = None,
                 **event_fields: Any) -> None:
        self.verb, self.verb_done, self.measure = verb, verb_done or verb, measure
        self.status, self.limit, self._status_text = status, limit, None
        self.out = out
        self.tty = out is not None and (is_human(out) if tty is None else tty)
        self.sample, self.clock, self.event_fields = sample, clock, event_fields
        # a callable total is looked up by the thread, so the work does not wait for it
        self._total = total if callable(total) else None
        self.throttle = Throttle(total=None if callable(total) else (total or None), started=clock(),
                                 redraw=redraw, event_every=event_every, event_step=event_step, min_gap=min_gap)
        self._stop, self._total_known = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = 0  # length of the line on screen (0: nothing drawn)
        self._lock = threading.Lock()

    def __enter__(self) -> "Watch":
        def start() -> None:
            self.throttle.started = self.clock()
            context = contextvars.copy_context()  # run_id, step: the events belong to the running step
            if self._total is not None:  # never joined: the work does not wait for a slow lookup
                threading.Thread(target=context.copy().run, args=(self._lookup_total,), daemon=True,
                                 name=f"progress-total-{self.verb}").start()
            self._thread = threading.Thread(target=context.run, args=(self._loop,), name=f"progress-{self.verb}",
                                            daemon=True)
            self._thread.start()

        _quietly(start)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        def stop() -> None:
            self._stop.set()
            self._total_known.set()  # a thread still waiting for the total stops waiting
            if self._thread is not None:
                self._thread.join(timeout=5)  # at most one sample (a bounded walk) to finish
            self._finish(ok=exc_type is None)

        _quietly(stop)
        return False

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _lookup_total(self) -> None:
        try:
            total = self._total() or None
        except Exception:  # noqa: BLE001 - no total, then: bytes and rate still show
            total = None
        with self._lock:
            self.throttle.total = total
        self._total_known.set()

    def _loop(self) -> None:
        if self._total is not None:  # the first line with its total, unless the lookup is slow
            self._total_known.wait(3)
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                began = self.clock()
                done = self.measure()
                if self.status is not None:
                    self._status_text = self.status()
                cost = self.clock() - began
                delay = max(self.sample, 20 * cost)
                self._report(self.clock(), done)
            except Exception:  # noqa: BLE001 - a failed sample is skipped, never raised
                delay = max(self.sample, 1.0)

    def _report(self, now: float, done: int | None) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self.throttle.add(now, done)
            line = self.throttle.line(self.verb, now, status=self._status_text, limit=self.limit)
            if self.tty and self.throttle.should_draw(now):
                self._draw(line)
            if self.throttle.should_emit(now):
                self._event(line, self.throttle.fields(now))

    def _draw(self, line: str, end: str = "") -> None:
        from aep_ops.base.redact import redact

        text = f"      {redact(line)}"
        pad = " " * max(0, self._drawn - len(text))
        self.out.write(f"\r{text}{pad}{end}")
        self.out.flush()
        self._drawn = 0 if end else len(text)

    def _event(self, line: str, fields: dict[str, Any], **extra: Any) -> None:
        from aep_ops.base.log import get_logger
        from aep_ops.base.redact import redact

        get_logger("aep_ops.engine").info("step.progress", message=redact(line), **fields, **self.event_fields,
                                          **extra)

    def _finish(self, *, ok: bool) -> None:
        with self._lock:
            now = self.clock()
            _quietly(lambda: self.throttle.add(now, self.measure()))
            elapsed = now - self.throttle.started
            line = (format_done(self.verb_done, self.throttle.done, elapsed) if ok
                    else self.throttle.line(self.verb, now, status=self._status_text, limit=self.limit))
            if self.tty and (ok or self._drawn):
                self._draw(line, end="\n")
            self._event(line, self.throttle.fields(now), final=True, ok=ok)


def _quietly(func: Callable[[], Any]) -> None:
    """Run ``func`` in the work's thread; its failure is progress's, never the work's. Except
    aep-ops's own errors: a step timeout (SIGALRM) can land here, and it belongs to the step."""
    from aep_ops.base.errors import AepError

    try:
        func()
    except AepError:
        raise
    except Exception:  # noqa: BLE001 - a broken terminal or a vanished file stops the progress only
        pass


def is_human(out: IO[str] | None) -> bool:
    """The same test as ``aep_ops.engine.context.say``: a terminal, or a stream marked for people."""
    if out is None:
        return False
    try:
        return bool(out.isatty() or getattr(out, "aep_ops_human", False))
    except (AttributeError, ValueError, OSError):
        return False


def stream_of(progress: Any) -> IO[str] | None:
    """The run's stderr behind a ``progress`` callable: steps pass ``ctx.progress``, a bound method
    of RunContext, whose ``out`` is where human progress goes. None for any other callable."""
    return getattr(getattr(progress, "__self__", None), "out", None)
