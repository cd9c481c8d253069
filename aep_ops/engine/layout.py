"""An id is a path: the layout check behind ``runbooks.check``.

A built-in runbook ``area.verb`` lives in the area's package (``aep_ops/area/``), and has
tests named after it (``tests/*/test_area_verb*.py``), so a reader goes from an id to its
code and its tests without searching. Plugins (runbooks outside this package) keep their own
layout and are not checked here.
"""

from __future__ import annotations

from pathlib import Path

from aep_ops.engine.runbook import ROOT_PACKAGE, Runbook

TESTS_DIR = Path(__file__).resolve().parents[2] / "tests"


def area_of(runbook_id: str) -> str:
    """``patch.rolling`` -> ``patch``; an id without a dot (``doctor``) is its own area."""
    return runbook_id.split(".", 1)[0]


def tests_prefix(runbook_id: str) -> str:
    """``pitr.restore`` -> ``test_pitr_restore``: how its test files begin."""
    return "test_" + runbook_id.replace(".", "_")


def check_layout(registry: dict[str, Runbook], tests_dir: Path | None = TESTS_DIR) -> list[str]:
    """Every built-in runbook whose function is outside its area package, or that has no tests
    named after its id (``tests_dir`` None or missing: an installed copy, tests not checked)."""
    problems = []
    test_files = ([p.name for p in tests_dir.glob("*/test_*.py")] if tests_dir is not None and tests_dir.is_dir()
                  else None)
    for rb_id in sorted(registry):
        module = registry[rb_id].func.__module__
        if not module.startswith(ROOT_PACKAGE + "."):
            continue  # a plugin
        package = f"{ROOT_PACKAGE}.{area_of(rb_id)}"
        if module != package and not module.startswith(package + "."):
            problems.append(f"runbook {rb_id} is defined in {module}, outside its area: move it to"
                            f" {package.replace('.', '/')}/runbooks.py (an id is a path)")
        stem = tests_prefix(rb_id)
        if test_files is not None and not any(name == stem + ".py" or name.startswith(stem + "_") for name in test_files):
            problems.append(f"runbook {rb_id} has no tests named after it: add tests/<unit|integration|e2e>/"
                            f"{stem}*.py")
    return problems
