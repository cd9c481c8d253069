"""Where the database runs, behind one interface, so pitr.*, dr.drill and db.* steps are written once.

One module per backend (``local.py``: the self-hosted source under the state dir, pgBackRest,
restored clusters on this machine; ``rds.py``: Amazon RDS automated backups and
restore-to-point-in-time into a new, tagged instance), each exposing ``Backend``. The
environment's ``backend`` setting (validated by the schema) names the module; every choice
goes through ``backend_for`` / ``backend_class`` here, and no step compares a backend name.
A restore is identified by its name (the cluster directory, or the new DB instance identifier).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, ClassVar

from aep_ops.errors import ConfigError, UsageError


class DatabaseBackend(ABC):
    """What a runbook step may ask of the database of an environment."""

    #: aep-ops runs the source itself (cluster, archiving, backups); otherwise a provider does,
    #: and the steps that build and back up a self-hosted source have nothing to do.
    self_hosted: ClassVar[bool]
    #: who manages the source when it is not self-hosted (for the plan line of those steps)
    managed_by: ClassVar[str] = "aep-ops"

    def __init__(self, settings: Any) -> None:
        self.settings = settings

    # --- checks that need no connection (classmethods: nothing is built or imported) ---

    @classmethod
    def check_usable(cls, settings: Any) -> None:
        """Refuse (UsageError, exit 2) before a run starts when this machine cannot do the work."""

    @classmethod
    def config_problems(cls, settings: Any) -> list[tuple[str, str]]:
        """(configuration key, what to do) for every setting this backend needs and lacks."""
        return []

    # --- the source ---

    @abstractmethod
    def connection_params(self) -> dict[str, Any]:
        """libpq parameters of the primary database; ``password`` stays a secret reference."""

    @abstractmethod
    def connect_source(self) -> AbstractContextManager[Any]: ...

    @abstractmethod
    def source_running(self) -> bool: ...

    @abstractmethod
    def archive_facts(self) -> dict[str, Any]:
        """last_archived_at, archive_lag_seconds, failing, problems (read-only)."""

    def before_target_writes(self) -> None:
        """Called before a drill writes the rows around its target time."""

    def archive_now(self, conn: Any, progress: Any) -> str | None:
        """Push the WAL holding what was just written to the archive; the segment name, or None
        when the provider archives on its own schedule (see ``wait_until_restorable``)."""
        return None

    @abstractmethod
    def wait_until_restorable(self, target: datetime, progress: Any) -> None: ...

    # --- restored copies ---

    @abstractmethod
    def check_target(self, target: datetime) -> dict[str, Any]:
        """Refuse (UsageError) a target this backend cannot restore to; backup_label, archive lag."""

    @abstractmethod
    def restore_state(self, name: str, target: datetime) -> tuple[str, dict[str, Any] | None]:
        """'absent', 'partial' (a killed restore), 'done' (at this target) or 'other' (name taken)."""

    @abstractmethod
    def restore(self, name: str, target: datetime, *, run_id: str | None, purpose: str, progress: Any,
                timeout: float) -> dict[str, Any]: ...

    @abstractmethod
    def verify(self, meta: dict[str, Any], target: datetime, smoke_queries: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def connect_restored(self, name: str) -> AbstractContextManager[Any]: ...

    @abstractmethod
    def free_bytes(self) -> int | None: ...

    @abstractmethod
    def discard(self, name: str) -> bool: ...

    def stop_restored(self, name: str) -> bool:
        """Stop what serves or writes copy ``name`` on this machine, keeping its files (a run
        interrupted after the restore); False when nothing ran. Default: nothing runs here."""
        return False

    def abandon_restore(self, name: str) -> bool:
        """A restore into ``name`` was interrupted: stop it and remove the half-made copy.
        Default (provider-managed): the provider's restore goes on; the next drill reaps it."""
        return False

    @abstractmethod
    def copies(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    # --- cutover: point the application at a restored copy (the old database is left alone) ---

    @abstractmethod
    def plan_cutover(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        """(needed, summary, details) for pointing the application at restore ``name``."""

    @abstractmethod
    def apply_cutover(self, name: str, details: dict[str, Any], run_id: str | None) -> dict[str, Any]: ...


def backend_class(settings: Any) -> type[DatabaseBackend]:
    """The Backend class of the environment's ``backend`` setting (the module of that name here)."""
    name = settings.env.get("backend") or "local"
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise ConfigError(f"environments.{settings.env_name}.backend: no database backend {name!r}") from None
    return module.Backend


def backend_for(settings: Any) -> DatabaseBackend:
    return backend_class(settings)(settings)


def restore_timeout(settings: Any) -> int:
    """Seconds a restore and its recovery may take (``drill.restore_timeout``, default 1 h)."""
    return int((settings.env.get("drill") or {}).get("restore_timeout") or 3600)


def name_taken(name: str) -> UsageError:
    """The refusal when a restore's name is in use for another target or by something aep-ops did not make."""
    return UsageError(f"a restore named {name!r} already exists for another target or was not made by aep-ops;"
                      f" pick another --name or `inv pitr.discard {name}`")
