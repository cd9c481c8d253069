"""``inv`` entry point: the namespace is built in aep_ops.tasks (the same one ``aep-ops`` uses)."""

import sys

from aep_ops.tasks import namespace_for
from aep_ops.tasks.program import route_inv_task_help

ns = namespace_for(sys.argv[1:])  # `inv dr.drill` imports the dr area only
route_inv_task_help()  # `inv runs.show --help` shows help instead of looking up a run named --help
