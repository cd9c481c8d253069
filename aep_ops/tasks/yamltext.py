"""Values as YAML for people (``config.show``, ``runs.show``): ``null``, ``true``, ``[a, b]``,
not Python's ``None``, ``True``, ``['a', 'b']``. One value stays on one line, so a tree of
``key: value`` lines (with a ``# source`` comment after each) is still YAML."""

from __future__ import annotations

from typing import Any

WIDTH = float("inf")  # never fold a long value over two lines


def inline(value: Any) -> str:
    """``value`` as YAML on one line (a mapping or list in flow style, ``{}`` and ``[]`` when empty)."""
    import yaml

    if isinstance(value, (list, tuple, dict)):
        text = yaml.safe_dump(_plain(value), default_flow_style=True, width=WIDTH, allow_unicode=True,
                              sort_keys=False)
    else:
        text = yaml.safe_dump({"k": _plain(value)}, default_flow_style=False, width=WIDTH, allow_unicode=True)[3:]
    text = text.rstrip("\n")
    if "\n" in text:  # a value of several lines: double-quoted, with \n inside
        text = yaml.safe_dump({"k": _plain(value)}, default_style='"', width=WIDTH, allow_unicode=True)
        text = text.split(": ", 1)[1].rstrip("\n")
    return text.replace("\n", " ")


def _plain(value: Any) -> Any:
    """Only what safe_dump can write: anything else (a secret reference, a path) as its text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
