"""The invoke namespace shared by ``inv`` (tasks.py) and the ``aep-ops`` console script.

One collection per runbook area (``dr``, ``pitr``, ``demo``...), built from the runbook
registry, plus the tasks about aep-ops itself (config, runbooks, runs). Building it imports
the runbook modules, which keep their heavy imports inside functions.
"""

from __future__ import annotations

import importlib
from typing import Any

# Areas whose collection also holds plain tasks (read-only views such as backup.list);
# each module defines invoke tasks at top level. Runbook tasks of the area join them.
AREA_TASK_MODULES: dict[str, str] = {
    "pitr": "aep_ops.tasks.pitr",
    "dr": "aep_ops.tasks.dr",
    "db": "aep_ops.tasks.db",
    "backup": "aep_ops.tasks.backup",
    "patch": "aep_ops.tasks.patch",
    "fleet": "aep_ops.tasks.fleet",
    "certs": "aep_ops.tasks.certs",
    "logs": "aep_ops.tasks.logs",
    "timers": "aep_ops.tasks.timers",
    "metrics": "aep_ops.tasks.metrics",
    "chatops": "aep_ops.tasks.chatops",
}


# Areas made of plain tasks only, with the modules that define them (for plain_namespace).
PLAIN_AREA_MODULES: dict[str, str] = {
    **AREA_TASK_MODULES,
    "config": "aep_ops.tasks.config",
    "runs": "aep_ops.tasks.runs",
}


def plain_namespace(task_name: str) -> Any:
    """A namespace holding only the plain tasks of ``task_name``'s area, or None when the task
    may be a runbook. Saves importing every runbook module (~30 ms of each start) for
    ``fleet.run``, ``runs.show``, ``db.url``...; the console script falls back to the whole
    namespace when anything else is asked for."""
    from invoke import Collection

    area, _, name = task_name.partition(".")
    module_name = PLAIN_AREA_MODULES.get(area)
    if not name or module_name is None:
        return None
    collection = Collection.from_module(importlib.import_module(module_name), name=area)
    if name not in collection.task_names:
        return None
    ns = Collection()
    ns.add_collection(collection)
    return long_flags_only(ns)


def area_namespace(task_name: str) -> Any:
    """A namespace holding only ``task_name``'s area (its plain tasks and its runbooks), or None
    when the task is not found there or plugins may add runbooks. Saves importing every other
    runbook module (~45 ms of each ``inv dr.drill``: the drill's own fixed overhead counts)."""
    from invoke import Collection

    from aep_ops.engine.runbook import ROOT_PACKAGE, area_runbooks
    from aep_ops.tasks.plugins import plugin_modules

    plain = plain_namespace(task_name)
    if plain is not None:
        return plain
    area, _, name = task_name.partition(".")
    if not name or "." in name or plugin_modules():
        return None
    runbooks = area_runbooks(ROOT_PACKAGE, area)
    if f"{area}.{name}" not in runbooks:
        return None
    from aep_ops.tasks.adapter import runbook_task
    from aep_ops.tasks.renderers import RENDERERS

    module_name = AREA_TASK_MODULES.get(area)
    collection = (Collection.from_module(importlib.import_module(module_name), name=area) if module_name
                  else Collection(area))
    for rb_id, rb in sorted(runbooks.items()):
        collection.add_task(runbook_task(rb, render=RENDERERS.get(rb_id)), name=rb_id.split(".", 1)[1])
    ns = Collection()
    ns.add_collection(collection)
    return long_flags_only(ns)


def namespace_for(argv: list[str]) -> Any:
    """``inv``'s namespace (tasks.py): one area's when the command line names one of its tasks and
    nothing else that looks like a task, else the whole one."""
    import re

    words = [w for w in argv if not w.startswith("-")]
    looks_like_task = re.compile(r"^[a-z][a-z0-9_-]*\.[a-z][a-z0-9_.-]*$")
    if (argv and not argv[0].startswith("-") and not any(looks_like_task.match(w) for w in words[1:])
            and not any(w in ("-l", "--list", "--complete") for w in argv)):
        fast = area_namespace(argv[0])
        if fast is not None:
            return fast
    return build_namespace()


def long_flags_only(ns: Any) -> Any:
    """One rule for every task: long flags only. invoke's automatic short flags gave ``-r`` a
    different meaning per task (``--runbook`` in runs.list, ``--run`` in patch.status) and
    shadowed its own core flags (``-e``, ``-l``, ``-h``)."""
    for task in ns.tasks.values():
        task.auto_shortflags = False
    for sub in ns.collections.values():
        long_flags_only(sub)
    return ns


def build_namespace() -> Any:
    from invoke import Collection

    from aep_ops.engine.runbook import load_all
    from aep_ops.tasks import catalog, config, runs
    from aep_ops.tasks.adapter import runbook_task
    from aep_ops.tasks.plugins import plugin_modules
    from aep_ops.tasks.renderers import RENDERERS

    ns = Collection()
    ns.add_collection(Collection.from_module(config, name="config"))
    ns.add_collection(Collection.from_module(catalog, name="runbooks"))
    ns.add_collection(Collection.from_module(runs, name="runs"))
    areas: dict[str, Any] = {}
    for area, module_name in AREA_TASK_MODULES.items():  # plain (non-runbook) tasks of an area
        areas[area] = Collection.from_module(importlib.import_module(module_name), name=area)
        ns.add_collection(areas[area])
    for rb_id, rb in sorted(load_all(plugin_modules()).items()):
        task = runbook_task(rb, render=RENDERERS.get(rb_id))
        if "." not in rb_id:
            ns.add_task(task, name=rb_id)
            continue
        area = rb_id.split(".", 1)[0]
        if area not in areas:
            areas[area] = Collection(area)
            ns.add_collection(areas[area])
        areas[area].add_task(task, name=rb_id.split(".", 1)[1])
    return long_flags_only(ns)
