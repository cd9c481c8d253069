"""The Markdown side of a runbook, and the drift check between it and the code.

A runbook file ``runbooks/<id>.md`` starts with YAML front matter naming the function,
then one level-2 heading per step, in order, ending with the step id in backticks:

    ---
    id: demo.greet
    function: aep_ops.demo.runbooks:greet
    task: demo.greet
    summary: Write a greeting file
    owner: sre
    ---
    # Greet
    ## 1. Ensure the greeting directory `ensure_dir`
    ## 2. Write the greeting `ensure_greeting`
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aep_ops.engine.runbook import Runbook

RUNBOOKS_DIR = Path(__file__).resolve().parents[2] / "runbooks"
HEADING = re.compile(r"^##\s+(?:(\d+)\.\s+)?(.*?)\s*`([a-z][a-z0-9_]*)`\s*$")
REQUIRED_FRONT = ("id", "function", "summary", "owner")
ALLOWED_FRONT = {"id", "function", "task", "summary", "owner", "schedule", "chat"}
CHAT_VALUES = (True, False, "admin")  # front matter ``chat``: offered in chat to operators, not at all, to admins


@dataclass
class RunbookDoc:
    path: Path
    front: dict[str, Any]
    steps: list[tuple[int | None, str, str]]  # (number, title, step id)
    body: str
    problems: list[str] = field(default_factory=list)

    def anchor(self, step_id: str) -> str:
        for number, title, sid in self.steps:
            if sid == step_id:
                heading = f"{number}. {title} {sid}" if number else f"{title} {sid}"
                return f"{self.path.name}#{slug(heading)}"
        return self.path.name


def slug(heading: str) -> str:
    """GitHub-style heading anchor."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def parse(path: Path) -> RunbookDoc:
    import yaml

    text = path.read_text()
    problems: list[str] = []
    front: dict[str, Any] = {}
    body = text
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end == -1:
            problems.append(f"{path.name}: front matter is not closed with ---")
        else:
            try:
                loaded = yaml.safe_load(text[4:end])
                front = loaded if isinstance(loaded, dict) else {}
                if not isinstance(loaded, dict):
                    problems.append(f"{path.name}: front matter must be a mapping")
            except yaml.YAMLError as exc:
                problems.append(f"{path.name}: front matter is not valid YAML ({exc})")
            body = text[end + 4:].lstrip("\n")
    else:
        problems.append(f"{path.name}: no front matter (start the file with ---)")
    steps = []
    for line in body.splitlines():
        match = HEADING.match(line)
        if match:
            steps.append((int(match.group(1)) if match.group(1) else None, match.group(2), match.group(3)))
    return RunbookDoc(path=path, front=front, steps=steps, body=body, problems=problems)


def doc_dirs(extra: list[str] | tuple[str, ...] = ()) -> list[Path]:
    return [RUNBOOKS_DIR, *(Path(d) for d in extra)]


RUNBOOK_ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")


def find_doc(runbook_id: str, extra_dirs: list[str] | tuple[str, ...] = ()) -> Path | None:
    """The Markdown file of a runbook id; None for anything that is not an id (a path, ``..``),
    so no caller can be made to read a file outside the runbook directories."""
    if not isinstance(runbook_id, str) or not RUNBOOK_ID.fullmatch(runbook_id):
        return None
    for directory in doc_dirs(extra_dirs):
        candidate = directory / f"{runbook_id}.md"
        if candidate.is_file():
            return candidate
    return None


def check_drift(registry: dict[str, Runbook], dirs: list[Path]) -> list[str]:
    """Every problem between the Markdown files in ``dirs`` and the registered runbooks."""
    problems: list[str] = []
    seen: set[str] = set()
    for directory in dirs:
        for path in sorted(directory.glob("*.md")):
            if path.name.lower() == "readme.md":
                continue
            doc = parse(path)
            problems.extend(doc.problems)
            problems.extend(_check_front(doc))
            rb_id = doc.front.get("id") or path.stem
            seen.add(rb_id)
            rb = _resolve_function(doc, registry, problems)
            if rb is not None:
                problems.extend(_check_steps(doc, rb))
    for rb_id in sorted(set(registry) - seen):
        problems.append(f"runbook {rb_id} ({registry[rb_id].function_path}) has no file runbooks/{rb_id}.md")
    return problems


def _check_front(doc: RunbookDoc) -> list[str]:
    name = doc.path.name
    if doc.problems:  # unreadable front matter: its parse error says it all
        return []
    out = [f"{name}: front matter lacks '{key}'" for key in REQUIRED_FRONT if not doc.front.get(key)]
    out += [f"{name}: unknown front matter key '{key}'" for key in sorted(set(doc.front) - ALLOWED_FRONT)]
    if doc.front.get("id") and doc.front["id"] != doc.path.stem:
        out.append(f"{name}: id '{doc.front['id']}' does not match the file name")
    if "chat" in doc.front and doc.front["chat"] not in CHAT_VALUES:
        out.append(f"{name}: chat is {doc.front['chat']!r}; use true, false or admin")
    if doc.front.get("task") and doc.front.get("id") and doc.front["task"] != doc.front["id"]:
        out.append(f"{name}: task '{doc.front['task']}' differs from id '{doc.front['id']}'")
    return out


def _resolve_function(doc: RunbookDoc, registry: dict[str, Runbook], problems: list[str]) -> Runbook | None:
    ref = doc.front.get("function")
    if not ref:
        return None
    module_name, _, attr = str(ref).partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError):
        problems.append(f"{doc.path.name}: function {ref} does not exist")
        return None
    if not isinstance(obj, Runbook):
        problems.append(f"{doc.path.name}: {ref} is not a registered runbook (decorate it with @runbook)")
        return None
    if doc.front.get("id") and obj.id != doc.front["id"]:
        problems.append(f"{doc.path.name}: {ref} is registered as '{obj.id}', not '{doc.front['id']}'")
    return obj if obj.id in registry else None


def _check_steps(doc: RunbookDoc, rb: Runbook) -> list[str]:
    name = doc.path.name
    in_code = rb.step_ids()
    in_doc = [sid for _, _, sid in doc.steps]
    out = [f"{name}: step {sid} is in {rb.function_path} but has no heading" for sid in in_code if sid not in in_doc]
    out += [f"{name}: heading for step {sid} has no step in {rb.function_path}" for sid in in_doc if sid not in in_code]
    common_doc = [s for s in in_doc if s in in_code]
    common_code = [s for s in in_code if s in in_doc]
    if common_doc != common_code:
        out.append(f"{name}: steps out of order: file has {', '.join(common_doc)}; code has {', '.join(common_code)}")
    numbers = [n for n, _, _ in doc.steps]
    if any(n is not None for n in numbers) and numbers != list(range(1, len(numbers) + 1)):
        out.append(f"{name}: step headings are not numbered 1..{len(numbers)}")
    return out
