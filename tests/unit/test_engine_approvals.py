"""Approvals in the journal (SQLite here; the PostgreSQL journal runs the same SQL, see
tests/e2e/test_chatops_serve_replicas.py): one decision per request however many people click at
once, never one's own, never after the window, and consumed once with the approved arguments."""

from __future__ import annotations

import threading

import pytest

from aep_ops import config
from aep_ops.base.errors import ApprovalRequired
from aep_ops.engine.approvals import APPROVED, EXECUTED, Approvals
from aep_ops.engine.journal import Journal


@pytest.fixture
def approvals(state_dir):
    journal = Journal.open(config.load("prod", [f"state_dir={state_dir}"]))
    yield Approvals(journal)
    journal.close()


def ask(approvals, run_id="R1", params=None, ttl=900):
    return approvals.request(run_id, "demo.greet", "prod", params or {"name": "Ada", "pause": 0},
                             requested_by="slack:T1/UA", ttl_seconds=ttl, via="slack")


def test_many_approvers_at_once_one_decision(approvals):
    ask(approvals)
    start = threading.Barrier(8)
    won, refused = [], []

    def click(who):
        start.wait()
        try:
            won.append(approvals.approve("R1", who).decided_by)
        except ApprovalRequired as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=click, args=(f"slack:T1/U{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    assert all(r.startswith(f"run R1 is already approved by {won[0]}") for r in refused)


def test_not_ones_own_not_late_not_other_arguments(approvals):
    request = ask(approvals)
    with pytest.raises(ApprovalRequired, match="a second person must approve it"):
        approvals.approve("R1", "slack:T1/UA")
    with pytest.raises(ApprovalRequired, match="not the ones shown for approval"):
        approvals.approve("R1", "slack:T1/UB", expected_hash="0" * 64)
    ask(approvals, "R2", ttl=0)
    with pytest.raises(ApprovalRequired, match="expired"):
        approvals.approve("R2", "slack:T1/UB")
    assert [a.run_id for a in approvals.expire_due()] == ["R2"] and approvals.expire_due() == []
    assert approvals.approve("R1", "slack:T1/UB", expected_hash=request.args_hash).state == APPROVED


def test_consumed_once_and_only_with_the_approved_arguments(approvals):
    ask(approvals)
    with pytest.raises(ApprovalRequired, match="has not been approved yet"):
        approvals.consume("R1", "demo.greet", "prod", {"name": "Ada", "pause": 0})
    approvals.approve("R1", "slack:T1/UB")
    with pytest.raises(ApprovalRequired, match="these arguments are not the approved ones"):
        approvals.consume("R1", "demo.greet", "prod", {"name": "Eve", "pause": 0})
    with pytest.raises(ApprovalRequired, match="these arguments are not the approved ones"):
        approvals.consume("R1", "demo.greet", "staging", {"name": "Ada", "pause": 0})
    taken = approvals.consume("R1", "demo.greet", "prod", {"name": "Ada", "pause": 0})
    assert (taken.state, taken.decided_by) == (EXECUTED, "slack:T1/UB")
    with pytest.raises(ApprovalRequired, match="already executed"):
        approvals.consume("R1", "demo.greet", "prod", {"name": "Ada", "pause": 0})
