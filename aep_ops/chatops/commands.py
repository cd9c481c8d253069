"""``/ops`` text into a command, with the CLI's own parser: a runbook's flags, values and errors
are those of ``aep-ops RUNBOOK`` (the invoke task built by tasks/adapter.py), and ``runs`` and
``status`` are ``runs.list`` and ``runs.show``. Flags that belong to the CLI alone are refused
here, saying what to do instead."""

from __future__ import annotations

import difflib
import html
import shlex
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aep_ops.base.errors import UsageError

VERBS = ("help", "runs", "status", "approve", "deny")
CLI_ONLY = {
    "yes": "--yes is the CLI's: in chat, production changes are approved by a second person (/ops approve RUN)",
    "set": "--set is the CLI's: configuration is not changed from chat",
    "json": "--json is the CLI's: chat shows the run's summary",
    "json_file": "--json-file is the CLI's: chat writes no files",
    "bundle": "--bundle is the CLI's: from chat the bundle goes under the state directory (its path is in the"
              " summary)",
}
QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})  # Slack's smart quotes
MAX_WORDS = 64


@dataclass
class Command:
    verb: str  # help | runs | status | approve | deny | run
    words: list[str] = field(default_factory=list)  # the arguments after the verb or runbook, as typed
    runbook: Any = None  # the Runbook for verb "run"
    kwargs: dict[str, Any] = field(default_factory=dict)  # parsed flags (verb "run", "runs", "status")
    help: bool = False  # RUNBOOK --help


def split(text: str) -> list[str]:
    """The words of a command as a shell would split them (Slack sends ``&amp;`` and smart quotes)."""
    try:
        words = shlex.split(html.unescape(text or "").translate(QUOTES))
    except ValueError as exc:
        raise UsageError(f"cannot read the command: {exc} (close the quote)") from None
    if len(words) > MAX_WORDS:
        raise UsageError(f"too many words ({len(words)}; at most {MAX_WORDS})")
    return words


def parse(text: str, exposed: dict[str, Any], command: str) -> Command:
    """``exposed``: runbook id -> Runbook of the runbooks chat may run."""
    words = split(text)
    if not words or words[0] in ("help", "--help", "-h"):
        return Command("help", words[1:])
    head, rest = words[0], words[1:]
    if head in ("approve", "deny"):
        if len(rest) != 1 or rest[0].startswith("-"):
            raise UsageError(f"usage: {command} {head} RUN_ID (the run id from the request message)")
        return Command(head, rest)
    if head in ("runs", "status"):
        from aep_ops.tasks import runs

        task = runs.list_ if head == "runs" else runs.show
        kwargs = parse_task(task, "runs.list" if head == "runs" else "runs.show", rest, command)
        return Command(head, rest, kwargs=kwargs)
    rb = exposed.get(head)
    if rb is None:
        hint = difflib.get_close_matches(head, [*exposed, *VERBS], n=1, cutoff=0.6)
        raise UsageError(f"no command or runbook '{head}'" + (f"; did you mean {hint[0]}?" if hint else "")
                         + f" (see `{command} help`)")
    if any(w in ("--help", "-h") for w in rest):
        return Command("run", rest, runbook=rb, help=True)
    kwargs = parse_task(runbook_task_of(rb), rb.id, rest, command)
    for name, why in CLI_ONLY.items():
        if kwargs.get(name):
            raise UsageError(why)
    return Command("run", rest, runbook=rb, kwargs=kwargs)


def runbook_task_of(rb: Any) -> Any:
    from aep_ops.tasks.adapter import runbook_task
    from aep_ops.tasks.renderers import RENDERERS

    return runbook_task(rb, render=RENDERERS.get(rb.id))


def parse_task(task: Any, name: str, words: list[str], command: str) -> dict[str, Any]:
    """invoke's parse of ``name words...`` against the task, its errors worded as the CLI words them."""
    from invoke.exceptions import ParseError
    from invoke.parser import Parser, ParserContext

    from aep_ops.tasks.coreflags import explain

    context = ParserContext(name=name, args=task.get_arguments())
    try:
        return dict(Parser(contexts=[context]).parse_argv([name, *words])[0].as_kwargs)
    except ParseError as exc:
        shim = SimpleNamespace(binary=command, collection=None, core=SimpleNamespace(unparsed=[name, *words]))
        raise UsageError(explain(shim, exc).removeprefix("error: ")) from None


def runbook_help(rb: Any, command: str) -> str:
    """``RUNBOOK --help`` for chat: the task's flags without the CLI-only ones."""
    from invoke.parser import ParserContext

    task = runbook_task_of(rb)
    flags = {f"--{n.replace('_', '-')}" for n in CLI_ONLY}
    tuples = [t for t in ParserContext(name=rb.id, args=task.get_arguments()).help_tuples()
              if t[0].split("=")[0] not in flags]
    width = max((len(t[0]) for t in tuples), default=0)
    lines = [f"Usage: {command} {rb.id} [--options]", "", f"{rb.summary}. Runbook: runbooks/{rb.id}.md", ""]
    lines += [f"  {flag:<{width}}  {text}" for flag, text in tuples]
    return "\n".join(lines)
