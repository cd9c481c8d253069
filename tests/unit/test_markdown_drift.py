"""runbooks.check catches every kind of drift between the Markdown and the code."""

from __future__ import annotations

import sys
import textwrap
import types

import pytest

from aep_ops.engine.markdown import check_drift, parse, slug
from aep_ops.engine.runbook import load_all, runbook, unregister
from aep_ops.engine.step import Step


class StepA(Step):
    id = "ensure_a"
    title = "A"


class StepB(Step):
    id = "run_b"
    title = "B"


class StepC(Step):
    id = "check_c"
    title = "C"


@pytest.fixture
def registry():
    module = types.ModuleType("drift_fixture")
    sys.modules["drift_fixture"] = module

    @runbook("drift.sample", steps=[StepA, StepB, StepC], summary="sample")
    def sample(ctx):
        """sample"""

    module.sample = sample
    module.not_a_runbook = lambda ctx: None
    yield {"drift.sample": sample}
    unregister("drift.sample")
    del sys.modules["drift_fixture"]


GOOD = """\
---
id: drift.sample
function: drift_fixture:sample
task: drift.sample
summary: sample
owner: sre
---
# Sample
## 1. Ensure A `ensure_a`
## 2. Run B `run_b`
## 3. Check C `check_c`
"""


def write(tmp_path, text, name="drift.sample.md"):
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_matching_file_has_no_problems(tmp_path, registry):
    assert check_drift(registry, [write(tmp_path, GOOD)]) == []


@pytest.mark.parametrize("edit, expected", [
    (lambda t: t.replace("drift_fixture:sample", "drift_fixture:gone"), "function drift_fixture:gone does not exist"),
    (lambda t: t.replace("drift_fixture:sample", "drift_fixture:not_a_runbook"), "is not a registered runbook"),
    (lambda t: t.replace("## 3. Check C `check_c`\n", ""), "step check_c is in"),
    (lambda t: t + "## 4. Extra `run_extra`\n", "heading for step run_extra has no step in"),
    (lambda t: t.replace("## 1. Ensure A `ensure_a`\n## 2. Run B `run_b`",
                         "## 1. Run B `run_b`\n## 2. Ensure A `ensure_a`"), "steps out of order"),
    (lambda t: t.replace("owner: sre\n", ""), "front matter lacks 'owner'"),
    (lambda t: t.replace("owner: sre\n", "owner: sre\ncolour: blue\n"), "unknown front matter key 'colour'"),
    (lambda t: t.replace("owner: sre\n", "owner: sre\nchat: everyone\n"), "chat is 'everyone'; use true, false or admin"),
    (lambda t: t.replace("summary: sample", "summary: a: b: c"), "front matter is not valid YAML"),
    (lambda t: t.replace("id: drift.sample", "id: drift.other"), "does not match the file name"),
    (lambda t: t.replace("## 2. Run B", "## 5. Run B"), "not numbered 1..3"),
    (lambda t: t.split("---\n", 2)[2], "no front matter"),
])
def test_each_kind_of_drift_is_reported(tmp_path, registry, edit, expected):
    problems = check_drift(registry, [write(tmp_path, edit(GOOD))])
    assert any(expected in p for p in problems), problems


def test_registered_runbook_without_a_file(tmp_path, registry):
    problems = check_drift(registry, [tmp_path])
    assert len(problems) == 1 and problems[0].startswith("runbook drift.sample (")
    assert problems[0].endswith("has no file runbooks/drift.sample.md")


def test_all_problems_are_listed_not_just_the_first(tmp_path, registry):
    text = GOOD.replace("## 3. Check C `check_c`\n", "").replace("owner: sre\n", "") + "## 3. X `run_x`\n"
    problems = check_drift(registry, [write(tmp_path, text)])
    assert len(problems) >= 3


def test_shipped_runbooks_agree_with_the_code():
    from aep_ops.engine.markdown import RUNBOOKS_DIR

    assert check_drift(load_all(), [RUNBOOKS_DIR]) == []


def test_anchor_is_the_github_heading_slug(tmp_path, registry):
    doc = parse(write(tmp_path, GOOD) / "drift.sample.md")
    assert doc.anchor("run_b") == "drift.sample.md#2-run-b-run_b"
    assert slug("3. Record the greeting's checksum ensure_checksum") == "3-record-the-greetings-checksum-ensure_checksum"
