"""Build an invoke task from a registered runbook.

Every runbook task gets the same front-door flags (--env, --dry-run, --resume, --yes,
--set, --json) plus the runbook function's own keyword-only parameters, so adding a
runbook never means writing CLI code.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import asdict
from typing import Any, Callable

from aep_ops.engine.runbook import Runbook
from aep_ops.errors import refuse_blank
from aep_ops.tasks.frontdoor import (RUN_STATUS_EXIT, check_output_path, front_door, load_settings, print_json,
                                     stdout_gone, write_json)

COMMON_HELP = {
    "env": "environment to act on (local, dev, staging, prod; default: local)",
    "dry_run": "run every check and no change; print the plan",
    "resume": "continue the run RUN_ID where it stopped (finished steps are not redone)",
    "yes": "approve steps that change production",
    "set": "override a configuration value, KEY=VALUE (repeatable)",
    "json": "print the result as JSON on stdout (--json PATH: write it to PATH instead)",
}
COMMON = ("env", "dry_run", "resume", "yes", "set", "json")
NUMBERS = {int: "a whole number", float: "a number"}  # parameter kinds parsed by aep_ops.numbers.number


def runbook_task(rb: Runbook, *, render: Callable[[Any, Any], None] | None = None) -> Any:
    """An invoke Task that runs ``rb`` through the engine and exits with the mapped code."""
    from invoke import Task
    from invoke.exceptions import Exit

    params = rb.params
    clash = [p.name for p in params if p.name in COMMON]
    if clash:
        raise ValueError(f"runbook {rb.id}: parameters {clash} clash with the common flags")

    def body(c: Any, **kwargs: Any) -> None:
        with front_door():
            from aep_ops.engine.runner import run_runbook

            refuse_blank("--resume", kwargs["resume"], "give the RUN_ID to continue (see `inv runs.list`),"
                         " or leave the flag out to start a new run")
            as_json = kwargs.pop("json")
            if as_json is not True and as_json is not None:
                check_output_path("--json", as_json)
            settings = load_settings(kwargs.pop("env"), kwargs.pop("set") or [])
            result = run_runbook(rb, settings, params=_typed(rb, kwargs),
                                 dry_run=kwargs["dry_run"], resume=kwargs["resume"], yes=kwargs["yes"])
            try:
                if as_json is True:
                    print_json({**asdict(result), **result.summary})
                else:
                    (render or render_result)(result, settings)
                sys.stdout.flush()
            except BrokenPipeError:  # `| head`: the reader left; the run's own outcome still decides the exit code
                stdout_gone()
            if as_json and as_json is not True:  # --json PATH: the same JSON, written to a file
                write_json(as_json, {**asdict(result), **result.summary})
            code = RUN_STATUS_EXIT.get(result.status, 1)
            if code:
                raise Exit(f"{rb.id}: {result.status}" + (f": {result.error}" if result.error else "")
                           + (f" (resume with --resume {result.run_id})"
                              if result.status in ("failed", "interrupted") and result.resumable else ""), code=code)

    signature = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    # invoke fills a positional argument only while its value is None: give those a None default.
    # Numbers too: invoke then hands over the string and _typed parses it (a bad value is one
    # line naming the flag, where invoke's own int() cast would end in a traceback).
    signature += [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY,
                                    default=None if p.name in rb.positional or p.kind in NUMBERS else p.default)
                  for p in params]
    signature += [
        inspect.Parameter("env", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("dry_run", inspect.Parameter.KEYWORD_ONLY, default=False),
        inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("yes", inspect.Parameter.KEYWORD_ONLY, default=False),
        inspect.Parameter("set", inspect.Parameter.KEYWORD_ONLY, default=None),
        inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]
    body.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    body.__doc__ = f"{rb.summary}. Runbook: runbooks/{rb.id}.md"
    body.__name__ = rb.id.split(".")[-1]
    return Task(body, name=rb.id.split(".")[-1], help={**COMMON_HELP, **rb.help}, iterable=["set"],
                optional=["json"], positional=list(rb.positional), auto_shortflags=False)


def _typed(rb: Runbook, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Runbook parameters only, converted to the type of their default (invoke passes strings);
    the engine checks their bounds."""
    from aep_ops.numbers import number

    out = {}
    for p in rb.params:
        value = kwargs.get(p.name)
        value = p.default if value is None else value
        if p.kind in NUMBERS:
            value = number(f"--{p.name.replace('_', '-')}", value, p.kind, default=p.default, what=NUMBERS[p.kind])
        out[p.name] = value
    return out


def render_result(result: Any, settings: Any) -> None:
    """Plain text on stdout: the plan of a dry run, or each step's outcome."""
    out = sys.stdout
    title = "plan" if result.status == "planned" else f"run {result.run_id}"
    print(f"{result.runbook} on {result.env}: {title}", file=out)
    for step in result.steps:
        status = step.summary if result.status == "planned" else step.status
        detail = "" if result.status == "planned" else (step.error or step.summary or "")
        line = f"  {step.number}. {step.title} [{step.step_id}]: {status}"
        print(line + (f" - {detail}" if detail else ""), file=out)
    if result.status != "planned":
        print(f"result: {result.status}", file=out)
    for key, value in result.summary.items():
        print(f"{key}: {value}", file=out)
