"""Checklists link automatable items to runbook steps; runbooks.check catches a dangling link."""

from __future__ import annotations

import textwrap

from aep_ops.engine.checklists import check_checklists
from aep_ops.engine.runbook import load_all


def test_the_shipped_checklists_link_only_to_existing_steps():
    count, problems = check_checklists(load_all())
    assert count >= 3 and problems == []


def test_a_renamed_step_or_runbook_or_a_malformed_link_is_reported_with_file_and_line(tmp_path):
    (tmp_path / "sample.md").write_text(textwrap.dedent("""\
        ---
        id: sample
        title: Sample
        owner: sre
        ---
        # Sample
        - [ ] Markers. (check: dr.drill#check_markers)
        - [ ] Renamed step. (check: dr.drill#check_everything)
        - [ ] Gone runbook. (check: dr.rehearse#measure)
        - [ ] Malformed. (check: backup.check)
        - [ ] A human does this one.
        """))
    (tmp_path / "other.md").write_text("---\nid: wrong\ntitle: T\n---\n# T\n")

    count, problems = check_checklists(load_all(), tmp_path)

    assert count == 2
    assert problems[:2] == ["other.md: front matter lacks 'owner'", "other.md: id 'wrong' does not match the file name"]
    assert problems[2].startswith("sample.md:8: links to step check_everything, which runbook dr.drill does not have")
    assert problems[3:] == ["sample.md:9: links to runbook dr.rehearse, which does not exist",
                            "sample.md:10: '(check: backup.check)' should name a runbook step,"
                            " e.g. (check: dr.drill#check_amcheck)"]
