"""Steady HTTP load for release tests: threads that keep requesting one URL, each over its own
keep-alive connection (reopened when the server closes it), and record every request, so a test
can count failures across a traffic switch and see which colour answered when.

Every request has a timeout and ``stop()`` joins every thread within a deadline (or says which
did not stop), so a test never hangs on the driver nor leaks its threads.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Sample:
    """One request: when it started (time.monotonic()), its status or the exception's class name,
    the ``colour`` the body named (None if none), and how long it took (seconds)."""

    started: float
    status: int | None
    error: str | None
    colour: str | None
    latency: float

    @property
    def failed(self) -> bool:
        return self.status != 200


class LoadDriver:
    """``with LoadDriver(url, threads=4, rate=50) as load: ...``; ``rate`` is requests per second
    over all threads (None: as fast as the server answers)."""

    def __init__(self, url: str, threads: int = 4, rate: float | None = None, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.threads, self.rate, self.timeout = threads, rate, timeout
        self._samples: list[Sample] = []
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> LoadDriver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> LoadDriver:
        for number in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"load-driver-{self.port}-{number}", daemon=True)
            self._workers.append(worker)
            worker.start()
        return self

    def stop(self) -> None:
        """Stop and join every thread; a thread still running after the deadline is an error."""
        self._stopping.set()
        deadline = time.monotonic() + self.timeout + 5
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        stuck = [w.name for w in self._workers if w.is_alive()]
        if stuck:
            raise RuntimeError(f"load threads did not stop: {stuck}")
        self._workers = []

    def samples(self, since: float | None = None) -> list[Sample]:
        """Requests that started at or after ``since`` (time.monotonic()), all when None."""
        with self._lock:
            return [s for s in self._samples if since is None or s.started >= since]

    def count(self, since: float | None = None) -> int:
        return len(self.samples(since))

    def failures(self, since: float | None = None) -> list[Sample]:
        """Non-200 answers and connection errors."""
        return [s for s in self.samples(since) if s.failed]

    def by_colour(self, since: float | None = None) -> Counter:
        """Answers per colour (200s and errors alike, as the body names it); None: no colour."""
        return Counter(s.colour for s in self.samples(since))

    def wait_count(self, count: int, since: float | None = None, timeout: float = 30.0) -> int:
        """Block until ``count`` requests started at/after ``since`` have been recorded."""
        deadline = time.monotonic() + timeout
        seen = scanned = 0
        with self._lock:
            while True:  # each wake-up looks only at the samples added since the last (no O(n^2) under load)
                seen += sum(1 for s in self._samples[scanned:] if since is None or s.started >= since)
                scanned = len(self._samples)
                if seen >= count:
                    return seen
                left = deadline - time.monotonic()
                if left <= 0 or not any(w.is_alive() for w in self._workers):
                    raise TimeoutError(f"{seen} of {count} requests after {timeout:g}s")
                self._lock.wait(min(left, 0.5))

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        period = self.threads / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        try:
            while not self._stopping.is_set():
                if period:
                    next_at += period
                    if self._stopping.wait(max(0.0, next_at - time.monotonic())):
                        break
                sample = self._request(conn)
                with self._lock:
                    self._samples.append(sample)
                    self._lock.notify_all()
        finally:
            conn.close()

    def _request(self, conn: http.client.HTTPConnection) -> Sample:
        started = time.monotonic()
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
            body = response.read()  # with "Connection: close" this also closes: the next request reconnects
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # a half-used connection is never reused
            return Sample(started, None, type(exc).__name__, None, time.monotonic() - started)
        return Sample(started, response.status, None, _colour(body), time.monotonic() - started)


def _colour(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value.get("colour") if isinstance(value, dict) else None
