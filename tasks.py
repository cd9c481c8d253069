"""``inv`` entry point: the namespace is built in aep_ops.tasks (the same one ``aep-ops`` uses)."""

from aep_ops.tasks import build_namespace

ns = build_namespace()
