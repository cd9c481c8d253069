"""How wide and how long a fan-out goes unless told otherwise (one place; imports nothing, so the
CLI can show them in its help without loading the fleet machinery)."""

DEFAULT_PARALLEL = 10  # hosts at a time, unless --parallel or inventory.parallel says
DEFAULT_TIMEOUT = 60.0  # seconds for the whole fan-out
