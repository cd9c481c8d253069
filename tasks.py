"""``inv`` entry point: the namespace is built in aep_ops.tasks (the same one ``aep-ops`` uses)."""

from aep_ops.tasks import build_namespace
from aep_ops.tasks.program import route_inv_task_help

ns = build_namespace()
route_inv_task_help()  # `inv runs.show --help` shows help instead of looking up a run named --help
