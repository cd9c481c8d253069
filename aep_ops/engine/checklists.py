"""Human checklists (``checklists/*.md``) and the check that their links into the code hold.

A checklist is Markdown with front matter (``id``, ``title``, ``owner``) and task-list items.
An item that aep-ops carries out names the runbook step that does it, so a reader can run
it and ``runbooks.check`` can tell when a rename leaves the checklist pointing nowhere:

    - [ ] amcheck passed on every B-tree index. (check: dr.drill#check_amcheck)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from aep_ops.engine.runbook import Runbook

CHECKLISTS_DIR = Path(__file__).resolve().parents[2] / "checklists"
LINK = re.compile(r"\(check:\s*([^)]*)\)")
TARGET = re.compile(r"([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)#([a-z][a-z0-9_]*)\Z")
REQUIRED_FRONT = ("id", "title", "owner")


@dataclass(frozen=True)
class CheckLink:
    line: int
    runbook_id: str
    step_id: str


def links(path: Path) -> tuple[list[CheckLink], list[str]]:
    """The (check: RUNBOOK#STEP) links of a checklist, and the malformed ones as problems."""
    found, problems = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for raw in LINK.findall(line):
            match = TARGET.match(raw.strip())
            if match is None:
                problems.append(f"{path.name}:{number}: '(check: {raw})' should name a runbook step,"
                                " e.g. (check: dr.drill#check_amcheck)")
            else:
                found.append(CheckLink(number, match.group(1), match.group(2)))
    return found, problems


def check_checklists(registry: dict[str, Runbook], directory: Path = CHECKLISTS_DIR) -> tuple[int, list[str]]:
    """(number of checklists, every problem): bad front matter, links to missing runbooks or steps."""
    from aep_ops.engine.markdown import parse

    problems: list[str] = []
    paths = sorted(p for p in directory.glob("*.md") if p.name.lower() != "readme.md") if directory.is_dir() else []
    for path in paths:
        doc = parse(path)
        problems.extend(doc.problems)
        if not doc.problems:
            problems += [f"{path.name}: front matter lacks '{key}'" for key in REQUIRED_FRONT if not doc.front.get(key)]
            if doc.front.get("id") and doc.front["id"] != path.stem:
                problems.append(f"{path.name}: id '{doc.front['id']}' does not match the file name")
        found, malformed = links(path)
        dangling = []
        for link in found:
            rb = registry.get(link.runbook_id)
            if rb is None:
                dangling.append(f"{path.name}:{link.line}: links to runbook {link.runbook_id}, which does not exist")
            elif link.step_id not in rb.step_ids():
                dangling.append(f"{path.name}:{link.line}: links to step {link.step_id}, which runbook"
                                f" {link.runbook_id} does not have (its steps: {', '.join(rb.step_ids())})")
        problems += sorted(malformed + dangling, key=_line_number)
    return len(paths), problems


def _line_number(problem: str) -> int:
    return int(problem.split(":", 2)[1])
