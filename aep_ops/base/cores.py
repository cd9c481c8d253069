"""How many cores this process may really use: what sizes the parallel work of a restore and its
checks (pgBackRest ``process-max``, ``pg_amcheck --jobs``) when the configuration does not.

``os.cpu_count()`` counts the machine's cores; a container or a systemd unit is often given fewer,
by CPU affinity (cpusets) or by a CFS quota (``cpu.max``, ``CPUQuota=``). Starting more workers than
that only makes them wait for each other."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" or "max PERIOD"


def available_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The smaller of the CPUs this process may run on and its cgroup quota (rounded up); at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit readable: the affinity stands
    return max(1, cores)


def configured_or_cores(value: object) -> int:
    """A configured worker count when set (a positive integer), else ``available_cores()``."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else available_cores()
