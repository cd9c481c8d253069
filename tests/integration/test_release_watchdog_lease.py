"""The release lease the canary and release.watchdog share, on both journals (SQLite on one ops host,
PostgreSQL shared by several): one holder at a time, a resumed run takes back only its own lease,
only an expired lease can be taken by the watchdog, and of many watchdogs at once exactly one wins."""

from __future__ import annotations

import threading

import pytest

from aep_ops import config
from aep_ops.engine.journal import Journal
from aep_ops.release.lease import ACTIVE, DONE, ROLLED_BACK, Leases
from tests.conftest import write_config


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request, tmp_path, monkeypatch, state_dir):
    if request.param == "postgres":
        cluster = request.getfixturevalue("pg_cluster")
        monkeypatch.setenv("AEP_JOURNAL_DSN", cluster.dsn)
        write_config(tmp_path / "c.yaml", "journal: {dsn: 'env:AEP_JOURNAL_DSN'}\n", monkeypatch)
    opened = Journal.open(config.load("local"))
    assert opened.kind == request.param
    yield opened
    opened.close()


def take(book, run_id, seconds=300):
    return book.take("rel", run_id, "release.canary", back_to="blue", released="green", holder="pid 1 on h",
                     seconds=seconds)


def test_one_holder_at_a_time_and_a_resume_takes_back_only_its_own(journal):
    book = Leases(journal)
    assert take(book, "run-a").state == ACTIVE
    assert take(book, "run-b") is None, "an active lease is not taken over by a new run"
    assert book.renew("rel", "run-a", 300, weight=25) and book.get("rel").weight == 25
    assert not book.renew("rel", "run-b", 300), "only the holder renews"
    assert book.resume("rel", "run-a", 300) and not book.resume("rel", "run-b", 300)
    assert book.finish("rel", "run-a", DONE, note="green promoted")
    assert not book.resume("rel", "run-a", 300), "a finished lease is not taken back"
    assert take(book, "run-b").run_id == "run-b", "a settled lease is free for the next release"


def test_the_watchdog_takes_only_an_expired_lease_and_the_holder_then_stops(journal):
    book = Leases(journal)
    take(book, "run-a", seconds=300)
    assert book.revoke("rel", note="watchdog", expired_only=True) is None, "a live lease is left alone"
    assert book.renew("rel", "run-a", 0)  # the holder went silent: its lease ends now
    taken = book.revoke("rel", note="lease expired", expired_only=True)
    assert taken is not None and taken.run_id == "run-a" and taken.back_to == "blue"
    lease = book.get("rel")
    assert lease.state == ROLLED_BACK and lease.note == "lease expired"
    assert not book.renew("rel", "run-a", 300) and not book.resume("rel", "run-a", 300), \
        "the canary that wakes up finds its lease gone"


def test_many_watchdogs_at_once_one_wins(journal, tmp_path):
    take(Leases(journal), "run-a", seconds=0)
    settings = config.load("local")
    winners, start = [], threading.Barrier(8)

    def watchdog():
        own = Journal.open(settings)  # each its own connection, as separate processes would have
        try:
            book = Leases(own)
            start.wait()
            if book.revoke("rel", note="lease expired", expired_only=True) is not None:
                winners.append(1)
        finally:
            own.close()

    threads = [threading.Thread(target=watchdog) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(winners) == 1
