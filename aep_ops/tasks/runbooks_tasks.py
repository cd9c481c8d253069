"""``runbooks.list``, ``runbooks.show``, ``runbooks.check``: the Markdown side of the runbooks."""

from __future__ import annotations

from invoke import task
from invoke.exceptions import Exit

from aep_ops.tasks.frontdoor import EXIT_FAILED, EXIT_USAGE, front_door


def _registry():
    from aep_ops.engine import runbook as rb_mod
    from aep_ops.tasks.plugins import plugin_modules

    return rb_mod.load_all(plugin_modules())


@task(name="list")
def list_(c):
    """List the runbooks with their summaries."""
    registry = _registry()
    width = max(len(i) for i in registry)
    for rb_id in sorted(registry):
        rb = registry[rb_id]
        print(f"{rb_id:<{width}}  {rb.summary}" + (f"  [schedule: {rb.schedule}]" if rb.schedule else ""))


@task(help={"id": "the runbook id, e.g. dr.drill"})
def show(c, id):
    """Show a runbook's Markdown in the terminal."""
    from aep_ops.engine.markdown import find_doc
    from aep_ops.tasks.plugins import runbook_dirs

    with front_door():
        _registry()
        path = find_doc(id, runbook_dirs())
        if path is None:
            raise Exit(f"error: no runbook file for '{id}' (see `inv runbooks.list`)", code=EXIT_USAGE)
        text = path.read_text()
        import sys

        if sys.stdout.isatty():
            from rich.console import Console
            from rich.markdown import Markdown

            body = text.split("\n---", 1)[1] if text.startswith("---\n") else text
            Console().print(Markdown(body.split("\n", 1)[1] if body.startswith("\n") else body))
        else:
            print(text, end="")


@task
def check(c):
    """Fail on any drift between runbooks/*.md and the registered runbook functions."""
    from aep_ops.engine.markdown import check_drift, doc_dirs
    from aep_ops.tasks.plugins import runbook_dirs

    registry = _registry()
    problems = check_drift(registry, doc_dirs(runbook_dirs()))
    if problems:
        for problem in problems:
            print(f"- {problem}")
        raise Exit(f"runbooks.check: {len(problems)} problem(s)", code=EXIT_FAILED)
    print(f"runbooks.check: {len(registry)} runbooks, code and Markdown agree")
