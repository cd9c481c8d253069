"""``python -m aep_ops``: the ``aep-ops`` command (the chat front door runs each command this way)."""

from aep_ops.tasks.program import main

main()
