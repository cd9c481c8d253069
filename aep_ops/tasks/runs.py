"""``runs.list`` and ``runs.show``: the journal, for people."""

from __future__ import annotations

from dataclasses import asdict

from invoke import task
from invoke.exceptions import Exit

from aep_ops.numbers import number
from aep_ops.tasks.frontdoor import EXIT_USAGE, front_door, load_settings, print_json

MAX_LIMIT = 10_000


def _journal(env):
    from aep_ops.engine.journal import Journal

    settings = load_settings(env)
    return Journal.open(settings)


@task(name="list", help={"runbook": "only this runbook", "env": "only this environment",
                         "limit": f"at most this many, 1 to {MAX_LIMIT} (default 20, newest first)",
                         "json": "print JSON"})
def list_(c, runbook=None, env=None, limit=None, json=False):
    """List recent runs, newest first."""
    with front_door():  # limit=None: invoke hands over the text, and number() says what is wrong with it
        limit = number("--limit", limit, int, default=20, minimum=1, maximum=MAX_LIMIT)
        journal = _journal(env)
        runs = journal.list_runs(runbook=runbook, env=env, limit=limit)
        if json:
            print_json([asdict(r) for r in runs])
            return
        if not runs:
            print("no runs recorded")
            return
        for r in runs:
            print(f"{r.id}  {r.runbook:<16} {r.env:<8} {r.status:<20} {r.started_at}  {r.actor or ''}")


@task(help={"run_id": "the run to show", "json": "print JSON"})
def show(c, run_id, json=False):
    """Show one run: parameters, each step's state, outputs and errors."""
    with front_door():
        journal = _journal(None)
        run = journal.get_run(run_id)
        if run is None:
            raise Exit(f"error: no run {run_id} in the journal (see `inv runs.list`)", code=EXIT_USAGE)
        steps = journal.steps(run_id)
        if json:
            print_json({"run": asdict(run), "steps": [asdict(s) for s in steps], "events": journal.events(run_id)})
            return
        print(f"run {run.id}: {run.runbook} on {run.env}, {run.status} (attempts: {run.attempts})")
        print(f"  by {run.actor} on {run.host}, started {run.started_at}, finished {run.finished_at or '-'}")
        print(f"  params: {run.params}")
        if run.error:
            print(f"  error: {run.error}")
        from aep_ops.engine.journal import EVENT_NOTE

        notes = [e for e in journal.events(run_id) if e["status"] == EVENT_NOTE]
        for s in steps:
            print(f"  {s.idx}. {s.step_id:<24} {s.status:<10} {s.plan or ''}" + (f"  error: {s.error}" if s.error else ""))
            for e in notes:
                if e["idx"] == s.idx:
                    print(f"       {e['at'][11:23]}  {e['note']}")
