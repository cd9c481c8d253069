"""The invoke namespace shared by ``inv`` (tasks.py) and the ``aep-ops`` console script.

One collection per runbook area (``dr``, ``pitr``, ``demo``...), built from the runbook
registry, plus the tasks about aep-ops itself (config, runbooks, runs). Building it imports
the runbook modules, which keep their heavy imports inside functions.
"""

from __future__ import annotations

from typing import Any


def build_namespace() -> Any:
    from invoke import Collection

    from aep_ops.engine.runbook import load_all
    from aep_ops.tasks import config_tasks, runbooks_tasks, runs
    from aep_ops.tasks.adapter import runbook_task
    from aep_ops.tasks.plugins import plugin_modules
    from aep_ops.tasks.renderers import RENDERERS

    ns = Collection()
    ns.add_collection(Collection.from_module(config_tasks, name="config"))
    ns.add_collection(Collection.from_module(runbooks_tasks, name="runbooks"))
    ns.add_collection(Collection.from_module(runs, name="runs"))
    areas: dict[str, Any] = {}
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
    return ns
