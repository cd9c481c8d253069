"""A drill that ends before ``check_amcheck`` waited for its pg_amcheck (a copy that could not be
reached, a failed step, SIGTERM) stops it here, whichever front door ran the drill: a chat-ops
process lives on after the run, and the checker must not."""

from __future__ import annotations

import sys
from typing import Any


def run_finished(event: Any) -> None:
    jobs = sys.modules.get("aep_ops.dr.amcheck_job")  # not imported by this process: nothing started
    if jobs is not None:
        jobs.stop_run(event.run_id)
