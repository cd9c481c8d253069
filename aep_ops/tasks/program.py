"""The ``aep-ops`` console script: the same namespace as ``inv`` in the repository."""

from __future__ import annotations

import sys

from invoke import Program
from invoke.exceptions import ParseError
from invoke.parser import ParseResult

from aep_ops import __version__
from aep_ops.tasks.coreflags import (cleanup_exit_2, explain, install_inv, print_help, print_version,
                                     refuse_core_flags)


HELP_FLAGS = ("--help", "-h")


def route_task_help(program: Program) -> None:
    """``TASK --help`` shows the task's help even when the task takes a positional argument
    (``runs.show RUN_ID``): invoke's parser would take '--help' as that argument's value. Call
    it once the core flags are parsed and before the tasks are; it turns the line into
    invoke's own ``--help TASK``."""
    core = getattr(program, "core", None)
    words = list(getattr(core, "unparsed", None) or [])
    words = words[:words.index("--")] if "--" in words else words
    if len(words) >= 2 and not words[0].startswith("-") and any(w in HELP_FLAGS for w in words[1:]):
        program.args.help.value = words[0]
        core.unparsed = []


def route_inv_task_help() -> None:
    """The same for ``inv``, whose Program is invoke's own (tasks.py is loaded mid-parse);
    also make its command-line mistakes exit 2 (bad input) like ``aep-ops``, not invoke's 1,
    with a "did you mean", and refuse the core flags aep-ops does not honour (coreflags)."""
    from invoke.main import program

    route_task_help(program)
    install_inv(program)  # also done by the console script (aep_ops/tasks/inv_script.py) before any parsing
    parse_tasks, parse_cleanup = program.parse_tasks, program.parse_cleanup

    def parse_tasks_exit_2() -> None:
        if nothing_to_parse(program):
            return refuse_core_flags(program)
        try:
            parse_tasks()
        except ParseError as exc:
            if resume_needs_no_positionals(program, exc):
                return parse_tasks_exit_2()
            print(explain(program, exc), file=sys.stderr)
            sys.exit(2)
        refuse_core_flags(program)

    def parse_cleanup_exit_2() -> None:
        cleanup_exit_2(parse_cleanup, program)

    program.parse_tasks, program.parse_cleanup = parse_tasks_exit_2, parse_cleanup_exit_2


def resume_needs_no_positionals(program: Program, exc: ParseError) -> bool:
    """``inv pitr.discard --resume RUN``: a resumed run takes its parameters from the journal, so
    the positional arguments invoke insists on are not needed. Give each missing one an empty
    value (``--name=``) and say so by returning True: the caller parses the line again."""
    context = getattr(exc, "context", None)
    missing = list(getattr(context, "missing_positional_args", None) or [])
    words = list(program.core.unparsed or [])
    names = {getattr(context, "name", None), *(getattr(context, "aliases", None) or ())}
    at = next((i for i, w in enumerate(words) if w in names), None)
    empties = [f"--{a.name.replace('_', '-')}=" for a in missing]
    if (not missing or at is None or any(e in words for e in empties)  # inserted once: never loop
            or not any(w == "--resume" or w.startswith("--resume=") for w in words[at + 1:])):
        return False
    program.core.unparsed = words[:at + 1] + empties + words[at + 1:]
    return True


def nothing_to_parse(program: Program) -> bool:
    """``--list``, bare ``--help``, no task: skip building invoke's task parser, which deep-copies
    every task's arguments (about 17 ms of `inv --list`) only to parse an empty line.

    A listing or help piped into ``head`` also ends quietly, as ``ls | head`` does, instead of
    with a BrokenPipe traceback (only then: a runbook must never die of SIGPIPE on a socket)."""
    if program.args.list.value or program.args.help.value or program.args.complete.value:
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if program.core.unparsed or isinstance(program.args.help.value, str):
        return False  # `--help TASK` looks the task up in the parser's contexts
    program.tasks = ParseResult()
    return True


class AepOpsProgram(Program):
    """invoke's Program, except that a command-line mistake exits 2 (bad input), not 1, and
    that a task (``fleet.run``, ``runs.show``, ``dr.drill``...) starts with its own area's
    modules only: the whole namespace is built only when something needs it."""

    _plain = False  # parse_collection chose one area's namespace

    def parse_core(self, argv):
        try:
            super().parse_core(argv)
        except ParseError as exc:
            print(exc, file=sys.stderr)
            sys.exit(2)

    def parse_collection(self):
        from aep_ops.tasks import area_namespace, build_namespace

        words = self.core.unparsed
        listing = self.args.list.value or self.args.help.value or self.args.complete.value
        plain = None if listing or not words or words[0].startswith("-") else area_namespace(words[0])
        self._plain = plain is not None
        self.namespace = plain if plain is not None else build_namespace()
        route_task_help(self)
        super().parse_collection()

    def parse_tasks(self):
        if nothing_to_parse(self):
            return refuse_core_flags(self)
        try:
            super().parse_tasks()
        except ParseError as exc:
            if resume_needs_no_positionals(self, exc):
                return self.parse_tasks()
            if self._plain:  # e.g. two tasks on one line: parse again against the whole namespace
                from aep_ops.tasks import build_namespace

                self._plain = False
                self.namespace = self.collection = build_namespace()
                return self.parse_tasks()
            print(explain(self, exc), file=sys.stderr)
            sys.exit(2)
        refuse_core_flags(self)

    def parse_cleanup(self):
        cleanup_exit_2(super().parse_cleanup, self)

    def print_version(self):
        print_version(self)

    def print_help(self):
        print_help(self)


def main() -> None:
    from invoke import Collection

    # The real namespace is chosen in parse_collection, once the task name is known.
    try:
        AepOpsProgram(namespace=Collection(), name="aep-ops", binary="aep-ops", version=__version__).run()
    except BrokenPipeError:  # `aep-ops --list | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
