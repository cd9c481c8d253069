"""executors.fleet.map_bounded: the one bounded fan-out (fleet.run, fleet.facts, patch.rolling)."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from aep_ops.base.errors import UsageError
from aep_ops.executors.fleet import map_bounded
from tests.support.fleet_hosts import call_while_held

REQUEST = contextvars.ContextVar("REQUEST", default=None)


def test_answers_keep_item_order_with_values_errors_and_the_callers_context():
    def work(n):
        if n == 3:
            raise ValueError("three is bad")
        if n == 4:
            raise KeyboardInterrupt  # not an Exception: still one item's answer
        time.sleep(0.05 * (5 - n))  # finish in reverse order
        return (n * 10, REQUEST.get())

    REQUEST.set("run-1")
    answers = map_bounded(work, range(1, 5), parallel=4, timeout=5)
    assert [a.value for a in answers[:2]] == [(10, "run-1"), (20, "run-1")]
    assert not answers[2].ok and answers[2].why() == "three is bad" and not answers[2].late
    assert not answers[3].ok and answers[3].why() == "KeyboardInterrupt"


def test_at_most_parallel_at_once_and_the_deadline_is_kept_whatever_hangs():
    """Item 0 is a hung host, held until the answers are back: they came at the deadline."""
    running, peak, lock, release, hung_done = [0], [0], threading.Lock(), threading.Event(), threading.Event()

    def work(n):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            if n == 0:
                release.wait()
                hung_done.set()
            else:
                time.sleep(0.05)
            return n
        finally:
            with lock:
                running[0] -= 1

    try:
        answers = call_while_held(lambda: map_bounded(work, range(7), parallel=3, timeout=0.6), release.set,
                                  what="map_bounded answering at its 0.6 s deadline")
        assert not hung_done.is_set()
    finally:
        release.set()
    assert peak[0] <= 3
    assert answers[0].late and answers[0].why() == "no answer within 0.6s"
    assert [a.value for a in answers[1:]] == [1, 2, 3, 4, 5, 6]


def test_no_items_and_bad_parallelism():
    assert map_bounded(str, [], parallel=1, timeout=1) == []
    with pytest.raises(UsageError, match="at least 1"):
        map_bounded(str, [1], parallel=0, timeout=1)
