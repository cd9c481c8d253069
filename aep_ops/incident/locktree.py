"""The lock tree: who blocks whom, root blockers first.

Built from ``pg_blocking_pids`` (each waiting session names every session it waits for), not
from self-joins of pg_locks: with several blockers those show a flat list of pairs and hide the
session everyone really waits behind (pg_activity#240, #316). A root blocker blocks others and
waits for no one; the sessions behind it are its tree. A session blocked by several roots is
shown under each. A cycle (a deadlock the detector has not broken yet) has no root: it is
reported as a root of its own, marked as a cycle, so it is never dropped.

Pure: rows in, a forest out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Waiter:
    """One session as the tree needs it: its pid, whom it waits for, how long it has waited."""

    pid: int
    blocking_pids: tuple[int, ...] = ()
    wait_seconds: float = 0.0


@dataclass
class Node:
    pid: int
    wait_seconds: float = 0.0
    children: list["Node"] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"pid": self.pid, "wait_seconds": round(self.wait_seconds, 3),
                "children": [c.to_json() for c in self.children]}


@dataclass
class Root:
    """A root blocker (or a cycle) and everything behind it."""

    node: Node
    blocked: int  # distinct sessions behind it, at any depth
    longest_wait: float  # the longest wait among them, seconds
    cycle: tuple[int, ...] = ()  # the members when the root is a cycle (no session outside blocks it)

    @property
    def pid(self) -> int:
        return self.node.pid

    def to_json(self) -> dict:
        return {"pid": self.pid, "blocked": self.blocked, "longest_wait": round(self.longest_wait, 3),
                "cycle": list(self.cycle), "tree": self.node.to_json()}


def build(rows: Iterable[Waiter]) -> list[Root]:
    """The forest: roots ordered by how many sessions wait behind them, then by the longest wait."""
    rows = list(rows)
    wait = {r.pid: r.wait_seconds for r in rows}
    blocked_by = {r.pid: tuple(dict.fromkeys(p for p in r.blocking_pids if p != r.pid)) for r in rows}
    behind: dict[int, list[int]] = {}
    for pid, blockers in blocked_by.items():
        for b in blockers:
            behind.setdefault(b, []).append(pid)
    # A blocker that is not itself waiting (or not in the rows at all: another backend type, a
    # prepared transaction shown as pid 0) is a root.
    roots = [b for b in behind if not blocked_by.get(b)]
    forest = [_root(pid, behind, wait) for pid in roots]
    reached = {pid for root in forest for pid in _pids(root.node)}
    for members in _cycles(blocked_by, reached):
        head = min(members)
        root = _root(head, behind, wait)
        root.cycle = tuple(sorted(members))
        forest.append(root)
        reached |= set(_pids(root.node))
    return sorted(forest, key=lambda r: (-r.blocked, -r.longest_wait, r.pid))


def _root(pid: int, behind: dict[int, list[int]], wait: dict[int, float]) -> Root:
    seen = {pid}
    node = Node(pid, wait.get(pid, 0.0))
    frontier = [node]
    while frontier:  # breadth first: each session once per root, at its shallowest place
        following = []
        for parent in frontier:
            for child_pid in sorted(behind.get(parent.pid, ()), key=lambda p: (-wait.get(p, 0.0), p)):
                if child_pid in seen:
                    continue
                seen.add(child_pid)
                child = Node(child_pid, wait.get(child_pid, 0.0))
                parent.children.append(child)
                following.append(child)
        frontier = following
    others = seen - {pid}
    return Root(node, len(others), max((wait.get(p, 0.0) for p in others), default=0.0))


def _pids(node: Node) -> list[int]:
    out = [node.pid]
    for child in node.children:
        out.extend(_pids(child))
    return out


def _cycles(blocked_by: dict[int, tuple[int, ...]], reached: set[int]) -> list[set[int]]:
    """Strongly connected components (of two or more sessions) among waiters no root reaches."""
    left = {p for p, b in blocked_by.items() if b and p not in reached}
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    stack: list[int] = []
    on_stack: set[int] = set()
    found: list[set[int]] = []
    counter = [0]

    def visit(v: int) -> None:  # Tarjan, iterative enough for lock graphs (a few hundred sessions)
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in blocked_by.get(v, ()):
            if w not in left:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(left):
        if v not in index:
            visit(v)
    return found


def render(forest: list[Root], describe: dict[int, str] | None = None) -> str:
    """The tree as text, one session a line, indented under what it waits for."""
    describe = describe or {}
    lines: list[str] = []

    def walk(node: Node, depth: int) -> None:
        label = describe.get(node.pid, "")
        waited = f" waiting {node.wait_seconds:.1f} s" if depth else ""
        lines.append(f"{'  ' * depth}{'└─ ' if depth else ''}pid {node.pid}{waited}{' ' + label if label else ''}")
        for child in node.children:
            walk(child, depth + 1)

    for root in forest:
        head = f"cycle {list(root.cycle)}: " if root.cycle else ""
        lines.append(f"{head}root pid {root.pid}: {root.blocked} session(s) behind, longest wait"
                     f" {root.longest_wait:.1f} s")
        walk(root.node, 0)
    return "\n".join(lines)
