"""``runs.list`` and ``runs.show``: the journal, for people.

Listings read like a log: a header, oldest first, the newest at the bottom (as dr.history and
backup.list). A text of several lines (a PostgreSQL error with DETAIL and HINT) never breaks a
column: runs.list shows its first line, runs.show its continuation lines indented under it.
"""

from __future__ import annotations

from dataclasses import asdict

from invoke import task
from invoke.exceptions import Exit

from aep_ops.base.numbers import number
from aep_ops.tasks.frontdoor import EXIT_USAGE, front_door, load_settings, print_json
from aep_ops.tasks.yamltext import inline
from aep_ops.base.textfmt import lines, one_line

MAX_LIMIT = 10_000
ERROR_CHARS = 80  # of the first line of a run's error in runs.list


def _journal(env):
    from aep_ops.engine.journal import Journal

    settings = load_settings(env)
    return Journal.open(settings)


@task(name="list", help={"runbook": "only this runbook", "env": "only this environment",
                         "limit": f"the newest this many, 1 to {MAX_LIMIT} (default 20), listed oldest first",
                         "json": "print JSON"})
def list_(c, runbook=None, env=None, limit=None, json=False):
    """List recent runs, oldest first (the newest at the bottom, like a log)."""
    with front_door():  # limit=None: invoke hands over the text, and number() says what is wrong with it
        limit = number("--limit", limit, int, default=20, minimum=1, maximum=MAX_LIMIT)
        journal = _journal(env)
        runs = list(reversed(journal.list_runs(runbook=runbook, env=env, limit=limit)))
        if json:
            print_json([asdict(r) for r in runs])
            return
        if not runs:
            print("no runs recorded")
            return
        print(f"{'run':<23}  {'runbook':<16} {'env':<8} {'status':<20} {'started (UTC)':<29}  {'actor':<20}  error")
        for r in runs:
            error = one_line(r.error, limit=ERROR_CHARS)
            print((f"{r.id:<23}  {r.runbook:<16} {r.env:<8} {r.status:<20} {r.started_at:<29}"
                   f"  {one_line(r.actor or '-'):<20}  {error}").rstrip())


@task(help={"run_id": "the run to show", "json": "print JSON"})
def show(c, run_id, json=False):
    """Show one run: parameters, overrides, each step's state, outputs and errors."""
    with front_door():
        journal = _journal(None)
        run = journal.get_run(run_id)
        if run is None:
            raise Exit(f"error: no run {run_id} in the journal (see `inv runs.list`)", code=EXIT_USAGE)
        steps = journal.steps(run_id)
        overrides = journal.overrides(run_id)
        approval = _approval(journal, run_id)
        if json:
            print_json({"run": asdict(run), "overrides": overrides, "steps": [asdict(s) for s in steps],
                        "events": journal.events(run_id), "approval": asdict(approval) if approval else None})
            return
        print(f"run {run.id}: {run.runbook} on {run.env}, {run.status} (attempts: {run.attempts})")
        print(f"  by {run.actor} on {run.host}, started {run.started_at}, finished {run.finished_at or '-'}")
        if approval is not None:
            decided = f" by {approval.decided_by}" if approval.decided_by else ""
            when = f" at {approval.decided_at}" if approval.decided_at else f", expires {approval.expires_at}"
            print(f"  requested by {approval.requested_by} ({approval.via}) at {approval.requested_at};"
                  f" approval {approval.state}{decided}{when}")
        _mapping("  params", run.params)
        _overrides(overrides)
        if run.error:
            _text("  error: ", run.error)
        from aep_ops.engine.journal import EVENT_NOTE

        notes = [e for e in journal.events(run_id) if e["status"] == EVENT_NOTE]
        for s in steps:
            _text(f"  {s.idx}. {s.step_id:<24} {s.status:<10} ", s.plan or "")
            if s.error:
                _text("       error: ", s.error)
            for e in notes:
                if e["idx"] == s.idx:
                    _text(f"       {e['at'][11:23]}  ", e["note"])


def _approval(journal, run_id):
    """The second-person approval of a run asked for in chat (None for other runs)."""
    from aep_ops.base.errors import StateUnwritable
    from aep_ops.engine.approvals import Approvals

    try:
        return Approvals(journal).get(run_id)
    except StateUnwritable:  # a read-only journal that never held an approval
        return None


def _mapping(head: str, values: dict, comments: dict | None = None) -> None:
    """``head: {}`` or ``head:`` and one ``key: value`` line per item, values in YAML."""
    if not values:
        print(f"{head}: {{}}")
        return
    print(f"{head}:")
    pad = " " * (len(head) - len(head.lstrip()) + 2)
    for key, value in values.items():
        comment = (comments or {}).get(key)
        print(f"{pad}{key}: {inline(value)}" + (f"    # {comment}" if comment else ""))


def _overrides(attempts: list[dict]) -> None:
    """The overrides of the run; per attempt only when a resumed attempt had others."""
    distinct = {repr(a["overrides"]) for a in attempts}
    for a in attempts if len(distinct) > 1 else attempts[:1]:
        values = {key: item.get("value") for key, item in a["overrides"].items()}
        sources = {key: item.get("source") for key, item in a["overrides"].items()}
        _mapping("  overrides" + (f" (attempt {a['attempt']})" if len(distinct) > 1 else ""), values, sources)
    if not attempts:
        print("  overrides: {}")


def _text(prefix: str, text: str) -> None:
    """``prefix`` and the first line of ``text``; each further line indented under the first."""
    found = lines(text) or [""]
    print((prefix + found[0].strip()).rstrip())
    for line in found[1:]:
        print(" " * len(prefix) + line.strip())
