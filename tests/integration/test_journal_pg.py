"""The shared journal on PostgreSQL: runs recorded there, and the advisory lock shared by ops hosts."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from aep_ops import config
from aep_ops.demo.runbooks import greet
from aep_ops.engine.runner import run_runbook
from aep_ops.engine.journal import Journal
from aep_ops.engine.lock import AdvisoryLock, Holder
from aep_ops.base.errors import LockedError
from tests.conftest import write_config
from tests.support.processes import spawned, wait_for_output


@pytest.fixture
def pg_journal(pg_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("AEP_JOURNAL_DSN", pg_cluster.dsn)
    write_config(tmp_path / "c.yaml", "journal: {dsn: 'env:AEP_JOURNAL_DSN'}\n", monkeypatch)
    return pg_cluster


def test_runs_and_steps_are_recorded_in_postgres(pg_journal, state_dir):
    settings = config.load("local")
    result = run_runbook(greet, settings, params={"name": "Ada"})
    assert result.status == "succeeded"
    assert not (state_dir / "journal.sqlite3").exists(), "the SQLite journal is not used"
    rows = pg_journal.sql("select status from aep_ops.runs where id = %s", (result.run_id,))
    assert rows == [("succeeded",)]
    steps = pg_journal.sql("select step_id, status from aep_ops.steps where run_id = %s order by idx",
                           (result.run_id,))
    assert steps == [("ensure_demo_dir", "changed"), ("ensure_greeting", "changed"), ("ensure_checksum", "changed")]
    journal = Journal.open(settings)
    assert journal.kind == "postgres" and journal.list_runs()[0].id == result.run_id
    journal.close()


def test_advisory_lock_refuses_a_second_holder_and_frees_on_death(pg_journal, tmp_path):
    first = AdvisoryLock(pg_journal.dsn, "demo.greet@local")
    first.acquire(Holder.me("20261126T000000Z-aaaaaa"))
    second = AdvisoryLock(pg_journal.dsn, "demo.greet@local")
    with pytest.raises(LockedError, match="locked by run 20261126T000000Z-aaaaaa"):
        second.acquire(Holder.me("20261126T000000Z-bbbbbb"))
    first.release()
    second.acquire(Holder.me("20261126T000000Z-bbbbbb"))
    second.release()

    # A holder process that dies (SIGKILL) loses its session, hence its lock.
    code = (f"from aep_ops.engine.lock import AdvisoryLock, Holder; import time\n"
            f"l = AdvisoryLock({pg_journal.dsn!r}, 'demo.greet@local'); l.acquire(Holder.me('20261126T000000Z-dead00'))\n"
            f"print('held', flush=True); time.sleep(60)\n")
    with spawned([sys.executable, "-c", code], log=tmp_path / "holder.log") as proc:
        wait_for_output(tmp_path / "holder.log", "held", proc=proc)
        third = AdvisoryLock(pg_journal.dsn, "demo.greet@local")
        with pytest.raises(LockedError, match="dead00"):
            third.acquire(Holder.me("20261126T000000Z-cccccc"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while True:
        try:
            third.acquire(Holder.me("20261126T000000Z-cccccc"))
            break
        except LockedError:
            assert time.monotonic() < deadline, "the dead holder's lock was never released"
            time.sleep(0.2)
    assert third.stale is not None and third.stale.run_id == "20261126T000000Z-dead00"
    third.release()
