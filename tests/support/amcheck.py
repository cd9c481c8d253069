"""The drill's pg_amcheck as a test's check that a restored copy is sound."""

from __future__ import annotations

from typing import Any

from aep_ops.pg import facts
from aep_ops.pg.amcheck import AmcheckJob, AmcheckOptions, AmcheckResult, conninfo_of


def pg_amcheck(conn: Any, *, heap: bool = False) -> AmcheckResult:
    """pg_amcheck over every B-tree index (and, with ``heap``, every table) of the database ``conn``
    is connected to, as the drill runs it; the extension is created first when missing."""
    facts.ensure_amcheck(conn)
    conninfo, password = conninfo_of(conn)
    options = AmcheckOptions(jobs=2, heap=heap, heapallindexed=heap)
    return AmcheckJob.start(None, conninfo, options, password=password).wait(120)
