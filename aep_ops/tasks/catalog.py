"""``runbooks.list``, ``runbooks.show``, ``runbooks.check``: the Markdown side of the runbooks."""

from __future__ import annotations

import re
import sys

from invoke import task
from invoke.exceptions import Exit

from aep_ops.tasks.frontdoor import EXIT_FAILED, EXIT_USAGE, front_door


def _registry():
    from aep_ops.engine import runbook as rb_mod
    from aep_ops.tasks.plugins import plugin_modules

    return rb_mod.load_all(plugin_modules())


@task(name="list")
def list_(c):
    """List the runbooks with their summaries (and schedules, from their front matter)."""
    registry = _registry()
    width = max(len(i) for i in registry)
    for rb_id in sorted(registry):
        schedule = _schedule(rb_id)
        print(f"{rb_id:<{width}}  {registry[rb_id].summary}" + (f"  [schedule: {schedule}]" if schedule else ""))


def _schedule(rb_id: str) -> str:
    """``Mon *-*-* 04:00:00 UTC``, or ``backup-full: ...; backup-incr: ...`` for several jobs."""
    from aep_ops.engine.markdown import find_doc, parse
    from aep_ops.tasks.plugins import runbook_dirs

    path = find_doc(rb_id, runbook_dirs())
    front = parse(path).front.get("schedule") if path else None
    if isinstance(front, dict):
        return "; ".join(f"{name}: {(spec or {}).get('schedule') if isinstance(spec, dict) else spec}"
                         for name, spec in front.items())
    return str(front or "")


@task(help={"id": "the runbook id, e.g. dr.drill"})
def show(c, id):
    """Show a runbook's Markdown in the terminal."""
    from aep_ops.engine.markdown import find_doc
    from aep_ops.tasks.plugins import runbook_dirs

    with front_door():
        registry = _registry()
        if id not in registry:  # an id, never a path: `runbooks.show ../../x` must not read any file
            raise Exit(f"error: no runbook '{_printable(id)}'{_did_you_mean(id, registry)}"
                       " (see `inv runbooks.list`)", code=EXIT_USAGE)
        path = find_doc(id, runbook_dirs())
        if path is None:
            raise Exit(f"error: no runbook file for '{id}' (see `inv runbooks.list`)", code=EXIT_USAGE)
        text = path.read_text()

        print(render_markdown(text) if sys.stdout.isatty() else text, end="")


def _printable(text: str, limit: int = 60) -> str:
    shown = "".join(ch if ch.isprintable() else "?" for ch in text)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _did_you_mean(word: str, registry: dict) -> str:
    import difflib

    close = difflib.get_close_matches(word, sorted(registry), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


@task
def check(c):
    """Fail on any drift between runbooks/*.md and the runbook functions, a runbook outside its area
    package or without tests named after its id, or a checklist link to nowhere."""
    from aep_ops.engine.checklists import check_checklists
    from aep_ops.engine.layout import check_layout
    from aep_ops.engine.markdown import check_drift, doc_dirs
    from aep_ops.tasks.plugins import runbook_dirs

    registry = _registry()
    problems = check_drift(registry, doc_dirs(runbook_dirs())) + check_layout(registry)
    checklists, checklist_problems = check_checklists(registry)
    problems += checklist_problems
    if problems:
        for problem in problems:
            print(f"- {problem}")
        raise Exit(f"runbooks.check: {len(problems)} problem(s)", code=EXIT_FAILED)
    print(f"runbooks.check: {len(registry)} runbooks, code, Markdown and layout agree;"
          f" {checklists} checklists link to existing steps")


def render_markdown(text: str) -> str:
    """Enough Markdown for a terminal: no front matter, bold headings, bold `code`.

    (A rendering library costs ~0.1 s at every start of the CLI through structlog's
    optional import of it; a runbook page does not need more than this.)
    """
    if text.startswith("---\n"):
        text = text.split("\n---", 1)[1].lstrip("-\n")
    bold, plain = "\033[1m", "\033[0m"
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(bold + line.lstrip("#").strip() + plain)
        else:
            out.append(re.sub(r"`([^`]+)`", bold + r"\1" + plain, line))
    return "\n".join(out) + "\n"
