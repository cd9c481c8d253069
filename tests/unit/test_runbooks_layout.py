"""An id is a path: the registry finds the area packages itself, and runbooks.check refuses a runbook
outside its area or without tests named after it."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pytest

from aep_ops.engine.layout import check_layout
from aep_ops.engine.runbook import area_modules, load_all

SHIPPED = {"backup.check", "backup.run", "backup.setup", "backup.verify", "db.setup", "demo.greet", "doctor",
           "dr.drill", "fleet.trust", "patch.rolling", "pitr.cutover", "pitr.discard", "pitr.restore"}


def test_every_shipped_runbook_is_found_and_lives_in_its_area():
    registry = load_all()
    assert SHIPPED <= set(registry)
    for rb_id in SHIPPED:
        area = rb_id.split(".")[0]
        assert registry[rb_id].func.__module__ == f"aep_ops.{area}.runbooks", rb_id
    assert check_layout(registry) == []


def test_a_function_moved_to_another_area_fails_the_check():
    registry = load_all()
    moved = registry["pitr.discard"]
    stray_func = lambda ctx, *, name="": None  # noqa: E731 (a stand-in with the same signature)
    stray_func.__module__, stray_func.__name__ = "aep_ops.dr.runbooks", "discard"
    problems = check_layout({**registry, "pitr.discard": dataclasses.replace(moved, func=stray_func)})
    assert problems == ["runbook pitr.discard is defined in aep_ops.dr.runbooks, outside its area: move it to"
                        " aep_ops/pitr/runbooks.py (an id is a path)"]


def test_a_runbook_without_tests_named_after_it_fails_the_check(tmp_path):
    registry = load_all()
    (tmp_path / "unit").mkdir()
    (tmp_path / "unit" / "test_pitr_restore_exact.py").write_text("")
    (tmp_path / "unit" / "test_pitr_discarded_elsewhere.py").write_text("")  # not named after pitr.discard
    problems = check_layout({k: registry[k] for k in ("pitr.restore", "pitr.discard")}, tmp_path)
    assert problems == ["runbook pitr.discard has no tests named after it: add"
                        " tests/<unit|integration|e2e>/test_pitr_discard*.py"]


def test_plugins_keep_their_own_layout():
    registry = load_all()
    plugin = dataclasses.replace(registry["demo.greet"], id="acme.greet")
    func = lambda ctx, *, name="": None  # noqa: E731
    func.__module__ = "acme_ops.greetings"
    assert check_layout({"acme.greet": dataclasses.replace(plugin, func=func)}) == []


def test_a_new_area_package_is_found_without_touching_the_engine(tmp_path, monkeypatch):
    root = tmp_path / "ops_root"
    for area in ("certs", "logs"):
        (root / area).mkdir(parents=True)
        (root / area / "__init__.py").write_text("")
        (root / area / "runbooks.py").write_text(textwrap.dedent("""\
            RUNBOOKS = True
        """))
    (root / "engine").mkdir()
    (root / "engine" / "__init__.py").write_text("")  # a package without runbooks.py: not an area
    (root / "helpers.py").write_text("")  # a module, not a package
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert area_modules("ops_root") == ["ops_root.certs.runbooks", "ops_root.logs.runbooks"]
    finally:
        for name in [m for m in sys.modules if m == "ops_root" or m.startswith("ops_root.")]:
            del sys.modules[name]


BASE = {"aep_ops.config", "aep_ops.base"}
INFRASTRUCTURE = {"aep_ops.pg", "aep_ops.aws", "aep_ops.executors", "aep_ops.db.backends", "aep_ops.db.locations",
                  "aep_ops.db.verify"}


def imported(path):
    """Every aep_ops module a file imports, at any depth of the file (lazy imports count too)."""
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aep_ops"):
            yield from (f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("aep_ops"))


@pytest.mark.parametrize("layer, allowed", [
    ("aep_ops/engine", BASE | {"aep_ops.engine"}),  # runs any runbook, knows none
    ("aep_ops/pg", BASE | INFRASTRUCTURE),
    ("aep_ops/aws", BASE | INFRASTRUCTURE),
    ("aep_ops/executors", BASE | INFRASTRUCTURE),
    ("aep_ops/db/backends", BASE | INFRASTRUCTURE),
])
def test_each_layer_imports_only_what_is_below_it(layer, allowed):
    from tests.conftest import REPO

    files = sorted((REPO / layer).glob("*.py"))
    assert files
    for source in files:
        for name in imported(source):
            assert any(name == ok or name.startswith(ok + ".") for ok in allowed), f"{layer}/{source.name}: {name}"
