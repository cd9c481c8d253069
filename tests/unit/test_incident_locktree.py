"""The lock tree from pg_blocking_pids rows: root blockers first, a session blocked by several
roots under each, counts and longest waits per root, cycles reported rather than lost."""

from __future__ import annotations

from aep_ops.incident.locktree import Waiter, build, render


def _shape(node) -> tuple:
    return (node.pid, tuple(_shape(c) for c in node.children))


def test_no_waiters_no_tree():
    assert build([Waiter(1), Waiter(2)]) == []


def test_chain_three_deep_with_two_roots():
    # A(1) and B(2) hold; C(3) waits for both; D(4) waits behind C
    rows = [Waiter(1), Waiter(2), Waiter(3, (1, 2), 40.0), Waiter(4, (3,), 35.0)]
    forest = build(rows)
    assert [r.pid for r in forest] == [1, 2]
    for root in forest:
        assert _shape(root.node) == (root.pid, ((3, ((4, ()),)),))
        assert root.blocked == 2 and root.longest_wait == 40.0 and root.cycle == ()


def test_roots_ordered_by_sessions_behind_then_longest_wait():
    rows = [Waiter(10), Waiter(11, (10,), 5.0),
            Waiter(20), Waiter(21, (20,), 1.0), Waiter(22, (20,), 2.0),
            Waiter(30), Waiter(31, (30,), 90.0)]
    forest = build(rows)
    assert [(r.pid, r.blocked) for r in forest] == [(20, 2), (30, 1), (10, 1)]
    assert [c.pid for c in forest[0].node.children] == [22, 21]  # longest wait first


def test_a_blocker_missing_from_the_rows_is_a_root():
    """pg_blocking_pids names a backend that is not a client (or a prepared transaction, pid 0)."""
    forest = build([Waiter(5, (0,), 3.0), Waiter(6, (5,), 1.0)])
    assert [r.pid for r in forest] == [0] and _shape(forest[0].node) == (0, ((5, ((6, ()),)),))


def test_diamond_counts_each_session_once():
    rows = [Waiter(1), Waiter(2, (1,), 3.0), Waiter(3, (1,), 4.0), Waiter(4, (2, 3), 9.0)]
    (root,) = build(rows)
    assert root.blocked == 3 and root.longest_wait == 9.0
    pids = []

    def walk(n):
        pids.append(n.pid)
        for c in n.children:
            walk(c)

    walk(root.node)
    assert sorted(pids) == [1, 2, 3, 4]


def test_cycle_without_a_root_is_reported():
    rows = [Waiter(7, (8,), 2.0), Waiter(8, (7,), 3.0), Waiter(9, (8,), 1.0)]
    forest = build(rows)
    assert len(forest) == 1 and forest[0].cycle == (7, 8)
    assert forest[0].blocked == 2  # 8 and 9 behind 7 (7 itself is the cycle's head)
    assert "cycle [7, 8]" in render(forest)


def test_self_reference_is_ignored():
    assert build([Waiter(3, (3,), 1.0)]) == []


def test_render_indents_under_the_blocker():
    text = render(build([Waiter(1), Waiter(2, (1,), 4.0)]), {1: "(app A)", 2: "(app B)"})
    assert text.splitlines() == ["root pid 1: 1 session(s) behind, longest wait 4.0 s", "pid 1 (app A)",
                                 "  └─ pid 2 waiting 4.0 s (app B)"]
