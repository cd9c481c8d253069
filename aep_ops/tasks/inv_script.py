"""The ``inv``/``invoke`` console scripts of aep-ops's virtualenv: invoke's own program, with
aep-ops's ``--version``, core help and core-flag policy installed before it parses anything
(invoke answers ``inv --version`` and a bare ``inv --help`` before it reads tasks.py, so
nothing in tasks.py could change them)."""

import sys


def main() -> None:
    from invoke.main import program

    from aep_ops.tasks.coreflags import install_inv

    install_inv(program)
    sys.argv[0] = sys.argv[0].removesuffix(".exe")
    sys.exit(program.run())
