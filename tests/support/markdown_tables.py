"""The drill report's Markdown tables read as a Markdown renderer reads them (GFM rules)."""

from __future__ import annotations

import re


def cells(row: str) -> list[str]:
    """A GFM table row split as GitHub does: on every pipe not escaped by a backslash."""
    body = row.strip()
    assert body.startswith("|") and body.endswith("|") and not body.endswith("\\|"), row
    parts, cell, i = [], "", 1
    while i < len(body) - 1:
        if body[i] == "\\" and i + 1 < len(body) - 1:
            cell += body[i:i + 2]
            i += 2
            continue
        if body[i] == "|":
            parts.append(cell)
            cell = ""
        else:
            cell += body[i]
        i += 1
    return [*parts, cell]


def tables(md: str) -> dict[str, list[list[str]]]:
    """Each table of the report by the heading above it (or its first header cell): its rows' cells.
    A table ends at the first line that does not start with a pipe, as a Markdown renderer ends it."""
    found, heading, lines = {}, "", md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            heading = line[3:].strip()
        if line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(---\|)+", lines[i + 1]):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            found[heading or rows[0][0].strip()] = rows
            heading = ""
            continue
        i += 1
    return found
