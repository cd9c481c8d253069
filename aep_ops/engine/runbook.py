"""Declaring runbooks and the registry of them.

A runbook is a function registered under an id (``area.verb``) together with its ordered
steps. The function receives the run context and the user's parameters; it validates
them (raise UsageError) and may add derived values to ``ctx.params``. The engine then
runs the steps (``engine.runner.run_runbook``). Front doors (invoke tasks, timers, chat)
build their arguments from the function's keyword-only parameters. A runbook's schedule (for
timers) is in its Markdown front matter, beside its owner:

    @runbook("demo.greet", steps=[EnsureGreeting, RunAnnounce],
             summary="Write a greeting file", help={"name": "who to greet"}, bounds={"pause": (0, 3600)})
    def greet(ctx, *, name: str = "world", pause: int = 0):
        if not name.strip():
            raise UsageError("--name must not be empty")
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from aep_ops.engine.step import Step

# The package whose area subpackages declare the built-in runbooks, each in its ``runbooks``
# module (``<root>.patch.runbooks`` holds ``patch.*``). Found by looking, never listed here:
# adding an area touches nothing in the engine. Importing a ``runbooks`` module must stay
# cheap (no boto3, psycopg, fabric, paramiko at module level): the CLI imports them to list tasks.
ROOT_PACKAGE = __name__.split(".", 1)[0]
AREA_MODULE = "runbooks"

_REGISTRY: dict[str, "Runbook"] = {}
NUMERIC = (int, float)
Bounds = tuple[Any, Any]  # (minimum, maximum), inclusive; either may be None


@dataclass(frozen=True)
class Param:
    """One keyword-only parameter as a front door sees it. ``bounds`` is ``(minimum, maximum)``
    for a number (``(None, None)``: unbounded), checked by the front door's parser."""

    name: str
    default: Any
    kind: type
    help: str
    bounds: Bounds = (None, None)


@dataclass
class Runbook:
    id: str
    func: Callable[..., Any]
    steps: list[type[Step]]
    summary: str
    owner: str = "sre"
    mutating: bool = True
    help: dict[str, str] = field(default_factory=dict)
    positional: tuple[str, ...] = ()  # parameters the CLI also takes without their --flag
    bounds: dict[str, Bounds] = field(default_factory=dict)  # numeric parameter -> (minimum, maximum)
    read_only: bool = False  # only looks (doctor): no lock, and no --dry-run, --resume or --yes to offer
    lock: str = ""  # runbooks naming the same lock exclude each other per environment (default: its id)

    def lock_key(self, env: str) -> str:
        return f"{self.lock or self.id}@{env}"

    @property
    def function_path(self) -> str:
        return f"{self.func.__module__}:{self.func.__name__}"

    @property
    def params(self) -> list[Param]:
        out = []
        for p in inspect.signature(self.func).parameters.values():
            if p.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            kind = type(p.default) if p.default not in (None, inspect.Parameter.empty) else str
            out.append(Param(p.name, None if p.default is inspect.Parameter.empty else p.default,
                             kind, self.help.get(p.name, ""), tuple(self.bounds.get(p.name, (None, None)))))
        return out

    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]


def runbook(id: str, *, steps: list[type[Step]], summary: str, owner: str = "sre",
            mutating: bool = True, help: dict[str, str] | None = None,
            positional: tuple[str, ...] = (), bounds: dict[str, Bounds] | None = None,
            read_only: bool = False, lock: str = "") -> Callable[[Callable[..., Any]], Runbook]:
    """Register ``func`` as the runbook ``id`` made of ``steps`` (in order).

    ``bounds`` gives each numeric parameter its range, ``{"scale": (0, 1000)}``: every front
    door refuses a value outside it before the run starts. ``read_only`` (it changes nothing,
    so it takes no lock) also drops the flags that would mean nothing: --dry-run, --resume, --yes.
    ``lock`` names a lock shared with other runbooks that change the same thing (the release
    runbooks all move one listener): one run of any of them at a time per environment."""

    def register(func: Callable[..., Any]) -> Runbook:
        ids = [s.id for s in steps]
        if len(set(ids)) != len(ids) or not all(ids):
            raise ValueError(f"runbook {id}: step ids must be unique and non-empty: {ids}")
        rb = Runbook(id=id, func=func, steps=list(steps), summary=summary, owner=owner,
                     mutating=mutating and not read_only, help=help or {},
                     positional=tuple(positional), bounds=dict(bounds or {}), read_only=read_only, lock=lock)
        _check_bounds(rb)
        _REGISTRY[id] = rb
        return rb

    return register


def _check_bounds(rb: Runbook) -> None:
    """A bound must name a numeric parameter and be (minimum, maximum) around its default."""
    numeric = {p.name: p for p in rb.params if p.kind in NUMERIC}
    for name, pair in rb.bounds.items():
        if name not in numeric:
            raise ValueError(f"runbook {rb.id}: bounds for {name!r}, which is not a numeric parameter")
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ValueError(f"runbook {rb.id}: bounds[{name!r}] must be (minimum, maximum)")
        low, high = pair
        default = numeric[name].default
        if (low is not None and high is not None and low > high) or \
                (low is not None and default < low) or (high is not None and default > high):
            raise ValueError(f"runbook {rb.id}: bounds[{name!r}] = {pair} leave out the default {default}")


def area_modules(root: str = ROOT_PACKAGE, module: str = AREA_MODULE) -> list[str]:
    """``<root>.<area>.<module>`` for every package of ``root`` that has that module (``runbooks``;
    the engine's run hooks look for ``run_hooks``), sorted.

    Looks at the files and imports nothing, so listing costs no more than the areas it finds."""
    package = importlib.import_module(root)
    found = set()
    for directory in package.__path__:
        for area in Path(directory).iterdir():
            if (area / "__init__.py").is_file() and (area / f"{module}.py").is_file():
                found.add(f"{root}.{area.name}.{module}")
    return sorted(found)


def area_runbooks(root: str, area: str) -> dict[str, Runbook]:
    """The runbooks of one area (``<root>.<area>.runbooks`` imported alone); {} when it has none."""
    package = importlib.import_module(root)
    if not any((Path(d) / area / f"{AREA_MODULE}.py").is_file() for d in package.__path__):
        return {}
    importlib.import_module(f"{root}.{area}.{AREA_MODULE}")
    return {rb_id: rb for rb_id, rb in _REGISTRY.items() if rb_id.split(".", 1)[0] == area}


def lock_key(runbook_id: str, env: str) -> str:
    """The lock a run of ``runbook_id`` on ``env`` holds (its own id unless it shares one)."""
    rb = _REGISTRY.get(runbook_id)
    return rb.lock_key(env) if rb else f"{runbook_id}@{env}"


def load_all(extra_modules: list[str] | tuple[str, ...] = ()) -> dict[str, Runbook]:
    """Import the area modules (found, not listed) and the plugins, and return the registry."""
    for name in (*area_modules(), *extra_modules):
        importlib.import_module(name)
    return dict(_REGISTRY)


def get(runbook_id: str) -> Runbook:
    from aep_ops.base.errors import UsageError

    if runbook_id not in _REGISTRY:
        raise UsageError(f"no runbook '{runbook_id}' (see `inv runbooks.list`)")
    return _REGISTRY[runbook_id]


def unregister(runbook_id: str) -> None:
    """Remove a runbook (tests that declare throwaway runbooks)."""
    _REGISTRY.pop(runbook_id, None)
