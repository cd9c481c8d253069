"""The per-host progress of one rollout: STATE_DIR/patching/<env>/<run_id>.json.

Why a file next to the journal: the journal records the runbook's four steps; a rollout has
a state per host that changes many times inside one step. This file holds those states, is
rewritten atomically (temporary file, fsync, rename) after every transition, and is what
``--resume`` continues from and ``patch.status`` shows. It also pins the host list and the
batches of the run, so a resumed run acts on the fleet it planned, not a rediscovered one.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from aep_ops.base.errors import StepFailed
from aep_ops.base.redact import redact_obj

# Host states (the transitions in between are patch_host.AFTER's values).
PENDING = "pending"
UP_TO_DATE = "up_to_date"
DONE = "done"
FAILED = "failed"
FINISHED = (UP_TO_DATE, DONE)
_HISTORY = 50  # transitions kept per host


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def state_path(state_dir: Path, env: str, run_id: str, area: str = "patching") -> Path:
    """``area``: whose rollouts (``patching``; ``service`` for service.restart), each apart."""
    return Path(state_dir) / area / env / f"{run_id}.json"


class RolloutState:
    """Thread-safe: the hosts of a batch report their transitions concurrently."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._lock = threading.Lock()
        self.on_change: Callable[[str], None] | None = None  # e.g. RunContext.note: the journal gets each transition

    @classmethod
    def load(cls, path: Path) -> RolloutState | None:
        try:
            return cls(path, json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StepFailed(f"rollout state file {path} is unreadable ({exc}); restore it from a backup"
                             " or start a new run (hosts drained by the old run are listed in the audit log)") from None

    @classmethod
    def create(cls, path: Path, *, run_id: str, env: str, hosts: list[dict[str, Any]], canary: list[str],
               batches: list[list[str]], up_to_date: list[str]) -> RolloutState:
        stamp = now()
        entries = {h["name"]: {"name": h["name"], "state": UP_TO_DATE if h["name"] in up_to_date else PENDING,
                               "at": stamp, "history": []} for h in hosts}
        data = {"run_id": run_id, "env": env, "created_at": stamp, "updated_at": stamp, "inventory": hosts,
                "canary": canary, "batches": batches, "hosts": entries}
        state = cls(path, data)
        path.parent.mkdir(parents=True, exist_ok=True)
        with state._lock:
            state._write()
        return state

    def hosts(self) -> dict[str, Any]:
        """Name -> inventory.Host, as planned."""
        from aep_ops.fleet.inventory import Host

        return {h["name"]: Host(**h) for h in self.data["inventory"]}

    def host(self, name: str) -> dict[str, Any]:
        with self._lock:
            return json.loads(json.dumps(self.data["hosts"][name]))

    def states(self) -> dict[str, str]:
        with self._lock:
            return {n: e["state"] for n, e in self.data["hosts"].items()}

    def failed(self) -> dict[str, dict[str, Any]]:
        """Name -> entry of every host whose last attempt failed."""
        with self._lock:
            return {n: dict(e) for n, e in self.data["hosts"].items() if e["state"] == FAILED}

    def finished(self, name: str) -> bool:
        return self.states().get(name) in FINISHED

    def update(self, name: str, **fields: Any) -> None:
        """Record facts about a host without changing its state (e.g. its registration)."""
        with self._lock:
            self.data["hosts"][name].update(fields)
            self._write()

    def transition(self, name: str, state: str, **info: Any) -> None:
        with self._lock:
            entry = self.data["hosts"][name]
            entry.update(info)
            entry.update(state=state, at=now())
            entry.pop("failed_step", None)
            entry.pop("error", None)
            entry.pop("last_ok", None)
            entry["history"] = (entry.get("history") or [])[-(_HISTORY - 1):] + [{"at": entry["at"], "state": state}]
            self._write()
        self._tell(f"{name}: {state}")

    def fail(self, name: str, step: str, error: str) -> None:
        """The host stays where it is; ``last_ok`` is where a resumed run continues from."""
        with self._lock:
            entry = self.data["hosts"][name]
            last_ok = entry.get("last_ok") if entry["state"] == FAILED else entry["state"]
            entry.update(state=FAILED, failed_step=step, error=error, last_ok=last_ok, at=now())
            entry["history"] = (entry.get("history") or [])[-(_HISTORY - 1):] + [
                {"at": entry["at"], "state": FAILED, "step": step, "error": error}]
            self._write()
        self._tell(f"{name}: failed at {step}: {error}")

    def _tell(self, message: str) -> None:
        if self.on_change is not None:
            self.on_change(message)

    def out_of_service(self) -> list[str]:
        """'name (state)' of the hosts this rollout took out of service and never finished."""
        return [f"{n} ({s})" for n, s in self.summary().items() if s not in FINISHED and self.data["hosts"][n].get("lb")]

    @property
    def abandoned(self) -> dict[str, Any] | None:
        return self.data.get("abandoned")

    def abandon(self, *, by: str, reason: str) -> None:
        """Give the rollout up: later runs may start; its hosts stay exactly where they are."""
        with self._lock:
            self.data["abandoned"] = {"by": by, "at": now(), "reason": reason}
            self._write()

    def summary(self) -> dict[str, str]:
        """Name -> one word or 'failed at STEP', for results and messages."""
        with self._lock:
            return {n: (f"failed at {e['failed_step']}" if e["state"] == FAILED else e["state"])
                    for n, e in self.data["hosts"].items()}

    def _write(self) -> None:
        self.data["updated_at"] = now()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w") as fh:
            fh.write(json.dumps(redact_obj(self.data), indent=1, sort_keys=True, default=str))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def left_out_of_service(state_dir: Path, env: str, *, except_run: str | None,
                        area: str = "patching") -> dict[str, list[str]]:
    """Run id -> hosts an earlier rollout took out of service (drained or mid-patch) and never
    finished. A new run must not start over them: it would see them as up to date and leave
    them drained. Resuming that run finishes them."""
    found: dict[str, list[str]] = {}
    for path in sorted((Path(state_dir) / area / env).glob("*.json")):
        if path.stem == except_run:
            continue
        state = RolloutState.load(path)
        if state is None or state.abandoned:
            continue
        hosts = state.out_of_service()
        if hosts:
            found[path.stem] = hosts
    return found


def host_dicts(hosts: list[Any]) -> list[dict[str, Any]]:
    return [asdict(h) for h in hosts]


def rollout_status(settings: Any, run_id: str | None = None) -> dict[str, Any]:
    """Each host's state in a rollout (default: the newest on this environment), from its
    state file, or from the journaled plan when the run never touched a host."""
    from aep_ops.engine.journal import Journal
    from aep_ops.base.errors import UsageError

    journal = Journal.open(settings)
    try:
        if run_id:
            run = journal.get_run(run_id)
            if run is None or run.runbook != "patch.rolling":
                raise UsageError(f"--run {run_id}: no patch.rolling run with that id (see `inv runs.list`)")
        else:
            runs = journal.list_runs(runbook="patch.rolling", env=settings.env_name, limit=1)
            if not runs:
                return {"env": settings.env_name, "run_id": None, "status": None, "hosts": []}
            run = runs[0]
        plan = next((s.outputs for s in journal.steps(run.id) if s.step_id == "plan_batches"), {})
    finally:
        journal.close()
    state = RolloutState.load(state_path(settings.state_dir, run.env, run.id))
    rows = []
    if state is not None:
        for name, e in state.data["hosts"].items():
            rows.append({"host": name, "state": e["state"], "failed_step": e.get("failed_step"),
                         "error": e.get("error"), "at": e.get("at"), "packages": len(e.get("packages") or []),
                         "rebooted": e.get("rebooted")})
    else:
        for h in plan.get("hosts", []):
            name = h["name"]
            label = (UP_TO_DATE if name in plan.get("up_to_date", []) else
                     "unreachable" if name in plan.get("unreachable", {}) else PENDING)
            rows.append({"host": name, "state": label, "failed_step": None,
                         "error": (plan.get("unreachable") or {}).get(name), "at": run.started_at,
                         "packages": len((plan.get("pending") or {}).get(name, [])), "rebooted": None})
    return {"env": run.env, "run_id": run.id, "status": run.status, "started_at": run.started_at,
            "state_file": str(state.path) if state else None, "hosts": rows}
