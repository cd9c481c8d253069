"""Declaring runbooks and the registry of them.

A runbook is a function registered under an id (``area.verb``) together with its ordered
steps. The function receives the run context and the user's parameters; it validates
them (raise UsageError) and may add derived values to ``ctx.params``. The engine then
runs the steps. Front doors (invoke tasks, timers, chat) build their arguments from the
function's keyword-only parameters:

    @runbook("demo.greet", steps=[EnsureGreeting, RunAnnounce],
             summary="Write a greeting file", help={"name": "who to greet"})
    def greet(ctx, *, name: str = "world"):
        if not name.strip():
            raise UsageError("--name must not be empty")
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from aep_ops.engine.step import Step

# Modules that declare the built-in runbooks. Importing them must stay cheap (no boto3,
# psycopg, fabric, paramiko at module level): the CLI imports them to list tasks.
BUILTIN_MODULES = ("aep_ops.demo", "aep_ops.doctor", "aep_ops.pitr", "aep_ops.local_source", "aep_ops.backup", "aep_ops.dr", "aep_ops.patching")

_REGISTRY: dict[str, "Runbook"] = {}


@dataclass(frozen=True)
class Param:
    name: str
    default: Any
    kind: type
    help: str


@dataclass
class Runbook:
    id: str
    func: Callable[..., Any]
    steps: list[type[Step]]
    summary: str
    owner: str = "sre"
    schedule: str | None = None
    mutating: bool = True
    help: dict[str, str] = field(default_factory=dict)
    positional: tuple[str, ...] = ()  # parameters the CLI also takes without their --flag

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
                             kind, self.help.get(p.name, "")))
        return out

    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]

    def __call__(self, settings: Any, **kwargs: Any) -> Any:
        """Run this runbook (the same entry point every front door uses)."""
        from aep_ops.engine.runner import run_runbook

        return run_runbook(self, settings, **kwargs)


def runbook(id: str, *, steps: list[type[Step]], summary: str, owner: str = "sre",
            schedule: str | None = None, mutating: bool = True, help: dict[str, str] | None = None,
            positional: tuple[str, ...] = ()) -> Callable[[Callable[..., Any]], Runbook]:
    """Register ``func`` as the runbook ``id`` made of ``steps`` (in order)."""

    def register(func: Callable[..., Any]) -> Runbook:
        ids = [s.id for s in steps]
        if len(set(ids)) != len(ids) or not all(ids):
            raise ValueError(f"runbook {id}: step ids must be unique and non-empty: {ids}")
        rb = Runbook(id=id, func=func, steps=list(steps), summary=summary, owner=owner,
                     schedule=schedule, mutating=mutating, help=help or {}, positional=tuple(positional))
        _REGISTRY[id] = rb
        return rb

    return register


def load_all(extra_modules: list[str] | tuple[str, ...] = ()) -> dict[str, Runbook]:
    """Import the modules that declare runbooks and return the registry."""
    for name in (*BUILTIN_MODULES, *extra_modules):
        importlib.import_module(name)
    return dict(_REGISTRY)


def get(runbook_id: str) -> Runbook:
    from aep_ops.errors import UsageError

    if runbook_id not in _REGISTRY:
        raise UsageError(f"no runbook '{runbook_id}' (see `inv runbooks.list`)")
    return _REGISTRY[runbook_id]


def unregister(runbook_id: str) -> None:
    """Remove a runbook (tests that declare throwaway runbooks)."""
    _REGISTRY.pop(runbook_id, None)
