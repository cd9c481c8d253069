"""invoke's core flags as aep-ops treats them, the same on both front doors (``inv``, ``aep-ops``).

invoke offers flags for its own ``c.run()`` (``--dry``, ``--echo``, ``--pty``, ``-f FILE``...), which
aep-ops never calls: taken silently, ``inv --dry demo.greet`` made the real change. Each core flag is
honoured (help, listing, completion, version, debug), refused with exit 2 and what to use instead,
or hidden (harmless ones). Help lists only the honoured ones. Unknown tasks and flags get a
"did you mean" from difflib.
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Any

# Flag name -> what to do instead. Given anywhere on the line, these end the command with exit 2.
REFUSED = {
    "dry": "-R/--dry is invoke's 'echo commands instead of running', which aep-ops does not use;"
           " for the plan without any change give the task --dry-run (`inv TASK --dry-run`)",
    "echo": "-e/--echo is invoke's command echo, which aep-ops does not use; see what a run would do with"
            " the task's --dry-run, or its log with --set log.level=debug",
    "pty": "-p/--pty is for invoke's shell commands, which aep-ops does not use; leave it out",
    "warn-only": "-w/--warn-only is for invoke's shell commands, which aep-ops does not use; a failed step"
                 " always stops the run (exit 1) and --resume RUN_ID continues it",
    "command-timeout": "-T/--command-timeout is for invoke's shell commands, which aep-ops does not use;"
                       " steps have their own timeouts, and fleet.run/fleet.facts take --timeout SECONDS",
    "hide": "--hide is for invoke's shell commands, which aep-ops does not use; leave it out",
    "prompt-for-sudo-password": "--prompt-for-sudo-password is for invoke's sudo, which aep-ops does not use;"
                                " leave it out",
    "config": "-f/--config names an invoke configuration file, which aep-ops does not read; name an aep-ops"
              " configuration file with AEP_OPS_CONFIG=FILE (see `inv config.show`)",
}
HIDDEN = {"write-pyc"}  # accepted and harmless, but nothing an operator needs to see
NO_IDEA = re.compile(r"No idea what '(.*)' is!", re.S)
NO_VALUE = re.compile(r"Flag <Argument: ([\w-]+)[^>]*> needed value and was not given one!")


# inv's flags that choose which tasks.py is loaded: they mean something before the task only.
LOADING = {"search-root": "-r/--search-root", "collection": "-c/--collection"}


def refuse_core_flags(program: Any) -> None:
    """Exit 2 with one line when a refused core flag was given (before or after the task name)."""
    for name, instead in REFUSED.items():
        if name in program.args and _given(program.args[name]):
            print(f"error: {instead}", file=sys.stderr)
            sys.exit(2)
    late = getattr(getattr(program, "core_via_tasks", None), "args", None) or {}
    for name, shown in LOADING.items():
        if name in late and _given(late[name]):  # `inv runs.list -r demo.greet`: not --runbook
            print(f"error: {shown} after a task means nothing (it chooses where tasks.py is found, before the"
                  " task); task flags are long only, e.g. --runbook, --run", file=sys.stderr)
            sys.exit(2)


def cleanup_exit_2(cleanup: Any, program: Any) -> None:
    """invoke's end-of-parsing (``--help TASK``, ``--list NAMESPACE``), its mistakes exit 2, not 1."""
    from invoke.exceptions import Exit, ParseError

    try:
        cleanup()
    except ParseError as exc:  # `inv --help no.such`
        print(explain(program, exc), file=sys.stderr)
        sys.exit(2)
    except Exit as exc:
        if exc.code == 1 and str(exc.message or "").startswith("Sub-collection "):
            tool = program.binary.split("[")[0] or "inv"
            print(f"error: --list {program.args.list.value}: no such namespace (see `{tool} --list`)",
                  file=sys.stderr)
            sys.exit(2)
        raise


def _given(arg: Any) -> bool:
    return bool(arg.value) if arg.kind is bool else arg.got_value


def version_line(program: Any = None) -> str:
    import invoke

    from aep_ops import __version__

    return f"aep-ops {__version__} (invoke {invoke.__version__})"


def print_version(program: Any = None) -> None:
    print(version_line(program))


def print_help(program: Any) -> None:
    """invoke's core help without the refused and hidden flags."""
    from invoke.parser import ParserContext

    args = program.core_args() + (program.task_args() if program.namespace is None else [])
    shown = [a for a in args if a.name not in REFUSED and a.name not in HIDDEN]
    suffix = ("<subcommand> [--subcommand-opts] ..." if program.namespace is not None
              else "task1 [--task1-opts] ... taskN [--taskN-opts]")
    print(f"Usage: {program.binary} [--core-opts] {suffix}")
    print("")
    print("Core options:")
    print("")
    program.print_columns(ParserContext(args=shown).help_tuples())
    if program.namespace is not None:
        program.list_tasks()


def explain(program: Any, exc: Exception) -> str:
    """A parse error as one line; for an unknown task or flag, with the nearest valid one."""
    match = NO_IDEA.fullmatch(str(exc))
    context = getattr(exc, "context", None)
    tool = program.binary.split("[")[0] or "inv"
    no_value = NO_VALUE.fullmatch(str(exc))
    if no_value and context is not None and context.name:  # `--pause` last on the line
        flag = "--" + no_value.group(1).replace("_", "-")
        return f"error: {context.name}: {flag} needs a value (see `{tool} {context.name} --help`)"
    if not match:
        return str(exc)
    word = match.group(1)
    if word.startswith("-"):
        flags = sorted(getattr(context, "flags", None) or ())
        where = f"{context.name}: " if context is not None and context.name else ""
        hint = _nearest(word.split("=", 1)[0], flags)
        see = f"`{tool} {context.name} --help`" if where else f"`{tool} --help`"
        return f"error: {where}unknown flag {word}" + (f"; did you mean {hint}?" if hint else "") + f" (see {see})"
    tasks = _task_names(program)
    hint = _nearest(word, tasks)
    if hint or context is None or not context.name:
        return f"error: no task '{word}'" + (f"; did you mean {hint}?" if hint else "") + f" (see `{tool} --list`)"
    if _after_json(program, word):
        to_file = f"use --json-file {word}" if "--json-file" in context.flags else f"redirect stdout (> {word})"
        return f"error: {context.name}: --json takes no value (JSON goes to stdout); to write it to a file {to_file}"
    return f"error: {context.name}: unexpected argument '{word}' (see `{tool} {context.name} --help`)"


def _nearest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _task_names(program: Any) -> list[str]:
    collection = getattr(program, "collection", None)
    if collection is None:
        return []
    names = set(collection.task_names)
    for aliases in collection.task_names.values():
        names.update(aliases)
    return sorted(names)


def _after_json(program: Any, word: str) -> bool:
    words = list(getattr(program.core, "unparsed", None) or [])
    return any(w == "--json" and nxt == word for w, nxt in zip(words, words[1:])) or f"--json={word}" in words


def install_inv(program: Any) -> None:
    """For the ``inv`` console script, before invoke parses anything: its ``--version`` and bare
    ``--help`` are answered before tasks.py is read, so they are set here (aep_ops/tasks/inv_script.py)."""
    program.print_version = lambda: print_version(program)
    program.print_help = lambda: print_help(program)
