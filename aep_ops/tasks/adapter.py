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
from aep_ops.base.errors import refuse_blank
from aep_ops.tasks.frontdoor import (EXIT_FAILED, RUN_STATUS_EXIT, check_output_path, front_door, load_settings,
                                     print_json, stdout_gone, write_json)

COMMON_HELP = {
    "env": "environment to act on (local, dev, staging, prod; default: local)",
    "dry_run": "run every check and no change; print the plan",
    "resume": "continue the run RUN_ID where it stopped (finished steps are not redone)",
    "yes": "approve steps that change production",
    "set": "override a configuration value, KEY=VALUE (repeatable; drill.scale=2 means"
           " environments.ENV.drill.scale)",
    "json": "print the result as JSON on stdout",
    "json_file": "also write the result as JSON to PATH (checked before the first step)",
}
COMMON = ("env", "dry_run", "resume", "yes", "set", "json", "json_file")
READ_ONLY_DROPS = ("dry_run", "resume", "yes")  # meaningless for a runbook that only looks (doctor)
NUMBERS = {int: "a whole number", float: "a number"}  # parameter kinds parsed by aep_ops.base.numbers.number


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

            for name in READ_ONLY_DROPS:
                kwargs.setdefault(name, None if name == "resume" else False)
            refuse_blank("--resume", kwargs["resume"], "give the RUN_ID to continue (see `inv runs.list`),"
                         " or leave the flag out to start a new run")
            as_json, json_file = bool(kwargs.pop("json")), kwargs.pop("json_file")
            if json_file is not None:
                check_output_path(json_file)
            settings = load_settings(kwargs.pop("env"), kwargs.pop("set") or [])
            result = shown(run_runbook(rb, settings, params=typed_params(rb, kwargs), dry_run=kwargs["dry_run"],
                                       resume=kwargs["resume"], yes=kwargs["yes"], claim=approved_request()))
            try:
                if as_json:
                    print_json({**asdict(result), **result.summary})
                else:
                    (render or render_result)(result, settings)
                sys.stdout.flush()
            except BrokenPipeError:  # `| head`: the reader left; the run's own outcome still decides the exit code
                stdout_gone()
            if json_file is not None:  # --json-file PATH: the same JSON, written to a file
                write_json(json_file, {**asdict(result), **result.summary})
            code = RUN_STATUS_EXIT.get(result.status, 1)
            if result.status == "planned" and result.error:  # a trial step's dry run failed
                code = EXIT_FAILED
            if code:
                raise Exit(outcome_line(result), code=code)

    signature = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    # invoke fills a positional argument only while its value is None: give those a None default.
    # Numbers too: invoke then hands over the string and typed_params parses it (a bad value is one
    # line naming the flag, where invoke's own int() cast would end in a traceback).
    signature += [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY,
                                    default=None if p.name in rb.positional or p.kind in NUMBERS else p.default)
                  for p in params]
    defaults = {"env": None, "dry_run": False, "resume": None, "yes": False, "set": None, "json": False,
                "json_file": None}
    common = [name for name in COMMON if not (rb.read_only and name in READ_ONLY_DROPS)]
    signature += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name]) for name in common]
    body.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    body.__doc__ = f"{rb.summary}. Runbook: runbooks/{rb.id}.md"
    body.__name__ = rb.id.split(".")[-1]
    return Task(body, name=rb.id.split(".")[-1], help={**{k: COMMON_HELP[k] for k in common}, **rb.help},
                iterable=["set"], positional=list(rb.positional), auto_shortflags=False)


def approved_request() -> str | None:
    """The approved request (a run awaiting approval) that the chat front door asks this process
    to carry out, by setting AEP_OPS_APPROVED_RUN; the engine checks and consumes its approval."""
    import os

    return os.environ.get("AEP_OPS_APPROVED_RUN", "").strip() or None


def shown(result: Any) -> Any:
    """The run's result with every secret masked, for every renderer and the JSON alike: a step's
    plan, outputs and the run's summary hold what the step wrote (a DSN with its password), and a
    renderer prints them as plain text, which no JSON-only masking reaches."""
    from aep_ops.base.redact import redact_obj

    return redact_obj(result)


def typed_params(rb: Runbook, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Runbook parameters only, converted to the type of their default (invoke passes strings);
    the engine checks their bounds."""
    from aep_ops.base.numbers import number

    out = {}
    for p in rb.params:
        value = kwargs.get(p.name)
        value = p.default if value is None else value
        if p.kind in NUMBERS:
            value = number(f"--{p.name.replace('_', '-')}", value, p.kind, default=p.default, what=NUMBERS[p.kind])
        out[p.name] = value
    return out


def outcome_line(result: Any) -> str:
    """The run's last line (stderr): how it ended and what to do next, in one line. Not the error
    itself: the result above (or the JSON) already says it, and a timer's reader takes this line whole."""
    from aep_ops.base.textfmt import flat

    failed = [s for s in result.steps if s.status == "failed"]
    where = f" in run {result.run_id}" if result.run_id else ""
    if result.status == "verification_failed":
        names = ", ".join(s.step_id for s in failed) or "a verification"
        return f"{result.runbook}: verification failed ({names}){where}"
    line = f"{result.runbook}: {'dry run failed' if result.status == 'planned' else result.status}"
    line += f" at step {failed[-1].number} ({failed[-1].step_id})" if failed else ""
    if not failed and result.error:  # nothing above names it: say it here, on one line
        line += f": {flat(result.error)}"
    if result.status in ("failed", "interrupted") and result.run_id:
        line += (f"; resume with --resume {result.run_id}" if result.resumable
                 else f"{where}; it cannot be resumed: check that step by hand, then start a new run")
    return line


def render_result(result: Any, settings: Any) -> None:
    """Plain text on stdout: the plan of a dry run, or each step's outcome, one line each (cut to
    the width on a terminal); a failed step's error is said here in full, its further lines
    indented under it. The step's id and Markdown anchor are in ``runs.show`` and ``--json``."""
    from aep_ops.base.textfmt import STEP_LINE_WIDTH, flat, lines, one_line, step_status

    out = sys.stdout
    width = STEP_LINE_WIDTH if getattr(out, "isatty", lambda: False)() else None
    planned = result.status == "planned"
    checks = _check_steps(result.runbook)
    print(f"{result.runbook} on {result.env}: {'plan' if planned else f'run {result.run_id}'}", file=out)
    for step in result.steps:
        check = step.step_id in checks
        if planned:
            status, detail = step.summary, ""
            if check and status.startswith("unchanged"):
                status = "passed" + status[len("unchanged"):]
        else:
            status, detail = step_status(step.status, check), step.error or step.summary or ""
        head = f"  {step.number}. {step.title}: "
        if step.error and not planned:
            error = lines(detail) or [""]
            print(f"{head}{status} - {error[0].strip()}", file=out)
            for more in error[1:]:
                print(f"      {more}", file=out)
            continue
        text = f"{status} - {detail}" if detail else status
        print(head + one_line(text, limit=None if width is None else max(width - len(head), 20)), file=out)
    if not planned:
        print(f"result: {result.status}", file=out)
    for key, value in result.summary.items():
        print(f"{key}: {flat(value)}", file=out)


def _check_steps(runbook_id: str) -> set[str]:
    """The ids of the runbook's checks (its soft steps; every step of a read-only runbook): their
    "unchanged" reads "passed"."""
    from aep_ops.engine.runbook import get
    from aep_ops.base.errors import UsageError as NoSuchRunbook

    try:
        rb = get(runbook_id)
    except NoSuchRunbook:
        return set()
    return {s.id for s in rb.steps if s.soft or not rb.mutating}
