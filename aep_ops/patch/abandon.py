"""``patch.abandon``: give up a rollout that cannot be finished, so that new ones may start.

A rollout that leaves hosts drained or half patched blocks every later run on its
environment (a new run would take those hosts for up to date and leave them out of
service). When such a run cannot be finished, e.g. its failed host was decommissioned,
the on-call engineer abandons it, with a reason: the hosts stay exactly as they are (they
are listed, to be handled by hand), the run can no longer be resumed, and it is audited.
"""

from __future__ import annotations

from typing import Any

from aep_ops.base.errors import ApprovalRequired, UsageError
from aep_ops.base.log import audit, default_actor


def abandon_rollout(settings: Any, run_id: str, *, reason: str, yes: bool = False) -> dict[str, Any]:
    """Mark ``run_id`` abandoned; returns what was done and the hosts left out of service."""
    from aep_ops.engine import journal as jr
    from aep_ops.engine.lock import Holder
    from aep_ops.engine.runner import lock_for
    from aep_ops.patch.state import RolloutState, state_path

    reason = " ".join((reason or "").split())
    if not reason:
        raise UsageError("--reason is required: say why the rollout is given up (it goes to the audit log)")
    if settings.production and not yes:
        raise ApprovalRequired(f"abandoning a rollout on production environment {settings.env_name} needs --yes;"
                               " nothing was changed")
    journal = jr.Journal.open(settings)
    try:
        run = journal.get_run(run_id)
        if run is None or run.runbook != "patch.rolling" or run.env != settings.env_name:
            raise UsageError(f"no patch.rolling run {run_id} on {settings.env_name} (see `inv runs.list`)")
        lock = lock_for(settings, journal, f"patch.rolling@{settings.env_name}")
        lock.acquire(Holder.me(f"abandon {run_id}"))  # LockedError (exit 3) while a rollout runs
        try:
            state = RolloutState.load(state_path(settings.state_dir, settings.env_name, run_id))
            if state is None:
                raise UsageError(f"run {run_id} never touched a host: there is nothing to abandon")
            hosts = state.out_of_service()
            if state.abandoned:
                return {"run_id": run_id, "changed": False, "abandoned": state.abandoned, "out_of_service": hosts}
            actor = default_actor()
            state.abandon(by=actor, reason=reason)
            if run.status != jr.RUN_SUCCEEDED:
                journal.finish_run(run_id, jr.RUN_FAILED, f"abandoned by {actor}: {reason}")
        finally:
            lock.release()
    finally:
        journal.close()
    audit(settings.state_dir, "patch.abandon", target=settings.env_name, args={"run": run_id, "reason": reason},
          result="abandoned" + (f"; still out of service: {', '.join(hosts)}" if hosts else ""))
    return {"run_id": run_id, "changed": True, "abandoned": state.abandoned, "out_of_service": hosts}
