"""The progress line of restores and backups, its bounded rate, the watcher's thread, and the
rule for restore_timeout (pure logic: the real restores are in tests/integration/test_restore_progress.py)."""

from __future__ import annotations

import io
import re
import threading
import time

import pytest

from aep_ops import config
from aep_ops.db.backends import restore_timeout
from aep_ops.pg.progress import Throttle, Watch, dir_size, format_done, format_progress
from aep_ops.base.textfmt import size

GiB, MiB = 2**30, 2**20


@pytest.mark.parametrize("value, text", [
    (0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (180 * MiB, "180 MiB"), (int(1.2 * GiB), "1.2 GiB"),
    (int(4.1 * GiB), "4.1 GiB"), (500 * GiB, "500 GiB"), (3 * 2**40, "3.0 TiB"),
])
def test_sizes_read_like_a_person_writes_them(value, text):
    assert size(value) == text


def test_a_known_total_shows_percent_rate_and_eta():
    line = format_progress("restoring", int(1.2 * GiB), int(4.1 * GiB), 180 * MiB, 7)
    assert line == "restoring: 1.2 GiB of 4.1 GiB (29%), 180 MiB/s, ETA 16 s"
    long = format_progress("restoring", 10 * GiB, 500 * GiB, 180 * MiB, 60)
    assert long.endswith("ETA 46 min 28 s")
    hours = format_progress("restoring", 0, 500 * GiB, 20 * MiB, 60)
    assert hours == "restoring: 0 B of 500 GiB (0%), 20 MiB/s, ETA 7 h 7 min"  # 25600 s, rounded to the minute


def test_nothing_is_guessed_without_a_total_or_a_rate():
    assert format_progress("backing up", int(1.2 * GiB), None, 180 * MiB, 12) == \
        "backing up: 1.2 GiB, 180 MiB/s, 12 s elapsed"
    assert format_progress("restoring", 0, 4 * GiB, None, 0.2) == "restoring: 0 B of 4.0 GiB (0%), 0.2 s elapsed"
    assert format_progress("restoring", 5 * GiB, 4 * GiB, 10 * MiB, 30) == \
        "restoring: 5.0 GiB of 4.0 GiB (100%), 10 MiB/s, finishing"
    assert format_progress("DB instance pitr-1", None, None, None, 250, status="creating", limit=3600) == \
        "DB instance pitr-1 (creating): 4 min 10 s elapsed, timeout in 55 min 50 s"
    assert format_done("restored", int(4.1 * GiB), 23) == "restored 4.1 GiB in 23 s (183 MiB/s)"


def test_off_a_tty_events_are_bounded_per_time_and_per_percent():
    total, seconds = 100 * GiB, 600.0  # ten minutes, sampled every 0.1 s
    throttle = Throttle(total=total, started=0.0)
    events, draws, t = 0, [], 0.0
    while t <= seconds:
        throttle.add(t, int(total * t / seconds))
        events += throttle.should_emit(t)
        if throttle.should_draw(t):
            draws.append(t)
        t = round(t + 0.1, 1)
    # one at the start, one per 10 s (600 s) or per 10 % (10): at most 1 + 60 + 10
    assert 60 <= events <= 71
    assert all(b - a >= 0.5 for a, b in zip(draws, draws[1:])), "a terminal line is redrawn at most every 0.5 s"
    fast, fast_events = Throttle(total=total, started=0.0), 0  # done in 3 s: never two events within 1 s
    for tenth in range(31):
        fast.add(tenth / 10, int(total * tenth / 30))
        fast_events += fast.should_emit(tenth / 10)
    assert fast_events == 4  # at 0, 1, 2 and 3 s


def test_the_rate_follows_the_last_seconds_and_what_was_written_never_shrinks():
    throttle = Throttle(total=10 * GiB, started=0.0)
    for t in range(20):
        throttle.add(float(t), t * 100 * MiB)
    assert throttle.rate() == pytest.approx(100 * MiB)
    throttle.add(20.0, 0)  # a backup's expiry removes old files at its end
    assert throttle.done == 19 * 100 * MiB


def test_the_thread_stops_on_every_way_out_and_never_raises_into_the_work():
    out = io.StringIO()
    out.aep_ops_human = True  # the stream the engine marks for people: the line is drawn
    calls = []

    def measure():
        calls.append(1)
        if len(calls) == 2:
            raise OSError("a file vanished")
        return len(calls) * MiB

    with pytest.raises(KeyboardInterrupt):
        with Watch("restoring", measure, 10 * MiB, out=out, sample=0.01, redraw=0.0) as watch:
            while len(calls) < 4:  # wait for real samples (not for time)
                threading.Event().wait(0.01)
            raise KeyboardInterrupt
    assert not watch.alive, "the watcher outlived the work"
    text = out.getvalue()
    assert "\rrestoring" not in text and "\r      restoring: " in text and text.endswith("\n")
    assert not any(t.name.startswith("progress-") for t in threading.enumerate())


def test_the_work_never_waits_for_a_slow_total_lookup():
    release = threading.Event()

    def total():  # a `pgbackrest info` that hangs
        release.wait(30)
        return GiB

    began = time.monotonic()
    with Watch("restoring", lambda: 0, total) as watch:
        pass
    try:
        assert time.monotonic() - began < 2 and not watch.alive
    finally:
        release.set()


def test_dir_size_counts_files_and_survives_what_it_cannot_read(tmp_path):
    (tmp_path / "base" / "1").mkdir(parents=True)
    (tmp_path / "base" / "1" / "16384").write_bytes(b"x" * 8192)
    (tmp_path / "PG_VERSION").write_text("15\n")
    (tmp_path / "link").symlink_to("/usr")  # not followed
    assert dir_size(tmp_path) == 8192 + 3
    assert dir_size(tmp_path / "gone") is None


def _settings(tmp_path, monkeypatch, text):
    conf = tmp_path / "c.yaml"
    conf.write_text(text)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(conf))
    return config.load("dev")


def test_restore_timeout_is_the_rto_objective_unless_set(tmp_path, monkeypatch):
    assert restore_timeout(_settings(tmp_path, monkeypatch, "environments:\n  dev:\n"
                                     "    objectives: {rto_seconds: 14400}\n")) == 14400
    assert restore_timeout(_settings(tmp_path, monkeypatch, "environments:\n  dev:\n"
                                     "    objectives: {rto_seconds: 1800}\n")) == 1800
    assert restore_timeout(_settings(tmp_path, monkeypatch, "environments:\n  dev:\n"
                                     "    objectives: {rto_seconds: 14400}\n"
                                     "    drill: {restore_timeout: 20000}\n")) == 20000, "explicit wins"
    assert restore_timeout(_settings(tmp_path, monkeypatch, "environments:\n  dev:\n"
                                     "    description: no objectives\n")) == 4 * 3600, "the platform's RTO"


def test_an_rds_restore_shows_the_status_the_waiter_sees_and_the_time_left():
    """RDS tells no bytes: the line shows the instance's status (from the waiter's own
    DescribeDBInstances answers: no extra call, which the strict Stubber would refuse) and time.
    Stubber, not moto: moto's new instances are 'available' at once, so no wait would be seen."""
    import boto3
    from botocore.stub import Stubber

    from aep_ops.db.backends.rds_restore import wait_available

    class Run:  # what a step passes: ctx.progress, a bound method whose object has ``out``
        out = io.StringIO()

        def progress(self, message):
            pass

    run = Run()
    run.out.aep_ops_human = True
    rds = boto3.client("rds", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(rds) as stubber:
        for status in ("creating", "creating", "available"):
            stubber.add_response("describe_db_instances", {"DBInstances": [
                {"DBInstanceIdentifier": "pitr-one", "DBInstanceStatus": status}]}, {"DBInstanceIdentifier": "pitr-one"})
        wait_available(rds, "pitr-one", timeout=600, delay=1, progress=run.progress)
        stubber.assert_no_pending_responses()
    screen = run.out.getvalue()
    assert re.search(r"\r +DB instance pitr-one \(creating\): [\d.]+ s elapsed, timeout in 9 min 5\d s", screen)
    assert re.search(r"\r +DB instance pitr-one available in [\d.]+ s *\n$", screen)
