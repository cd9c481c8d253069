"""The ``aep-ops`` console script: the same namespace as ``inv`` in the repository."""

from __future__ import annotations

import sys

from invoke import Program
from invoke.exceptions import ParseError

from aep_ops import __version__


class AepOpsProgram(Program):
    """invoke's Program, except that a command-line mistake exits 2 (bad input), not 1."""

    def parse_core(self, argv):
        try:
            super().parse_core(argv)
        except ParseError as exc:
            print(exc, file=sys.stderr)
            sys.exit(2)

    def parse_tasks(self):
        try:
            super().parse_tasks()
        except ParseError as exc:
            print(exc, file=sys.stderr)
            sys.exit(2)


def main() -> None:
    from aep_ops.tasks import build_namespace

    AepOpsProgram(namespace=build_namespace(), name="aep-ops", binary="aep-ops", version=__version__).run()
