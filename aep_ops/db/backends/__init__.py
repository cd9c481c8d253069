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

from aep_ops.base.errors import ConfigError, UsageError, VerificationFailed


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
                timeout: float, fast_replay: bool = False) -> dict[str, Any]:
        """Restore into a new copy ``name`` and promote it. ``fast_replay`` (a drill's throw-away copy):
        start it with the settings in ``FAST_REPLAY`` where the backend can, record them in the copy's
        metadata (``fast_replay``), and never let it be cut over to."""

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

    # --- cutover: make another database the application's primary and protect it, both ways ---
    # (to a restored copy, and back to the original or another copy while it exists; the one
    # left is not stopped or changed). Each pair is one journaled step of ``pitr.cutover``.

    @abstractmethod
    def source_name(self) -> str:
        """The original source's name, as ``pitr.list`` shows it (``aep-source``, the RDS instance id)."""

    @abstractmethod
    def active_name(self) -> str:
        """The database the application uses now, read from where the application finds it."""

    def previous_name(self) -> str | None:
        """The database the last cutover moved away from, when this backend records it."""
        return None

    @abstractmethod
    def plan_protect(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        """(needed, summary, details) for turning WAL archiving / automated backups on for ``name``."""

    @abstractmethod
    def apply_protect(self, name: str, details: dict[str, Any], progress: Any) -> dict[str, Any]: ...

    def verify_protect(self, name: str) -> None:
        """Raise VerificationFailed when ``name`` is still not protected after ``apply_protect``."""

    @abstractmethod
    def plan_cutover(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        """(needed, summary, details) for pointing the application at ``name``."""

    @abstractmethod
    def apply_cutover(self, name: str, details: dict[str, Any], run_id: str | None) -> dict[str, Any]: ...

    def verify_cutover(self, name: str) -> None:
        """Read back where the application is pointed; VerificationFailed unless it is ``name``."""
        if self.active_name() != name:
            raise VerificationFailed(f"the application still uses {self.active_name()}, not {name}")

    @abstractmethod
    def plan_first_backup(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        """(needed, summary, details) for the backup a new primary needs right away."""

    @abstractmethod
    def apply_first_backup(self, name: str, details: dict[str, Any], progress: Any) -> dict[str, Any]: ...

    def verify_first_backup(self, name: str, outputs: dict[str, Any]) -> None: ...

    @abstractmethod
    def check_archiving(self, name: str) -> dict[str, Any]:
        """Prove ``name``'s WAL reaches its archive now; VerificationFailed (with what to do) if not."""


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


DEFAULT_RTO_SECONDS = 4 * 3600  # the platform's recovery time objective, when an environment sets none


# Safe for a copy that is thrown away after its checks, never for one that serves: a crash of the
# machine while they are off can leave the copy's files corrupt. PostgreSQL skips fsyncing the
# whole restored data directory at start (SyncDataDirectory) and every later flush.
FAST_REPLAY = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}


def restore_timeout(settings: Any) -> int:
    """Seconds a restore and its recovery may take: ``drill.restore_timeout`` when set, else the
    environment's RTO objective (``objectives.rto_seconds``, 4 h when unset).

    Why the objective: the RTO is the time allowed from the start of a restore to a usable
    database, so a restore still running when it is spent has already missed it; stopping
    there gives a resumable failure that says so instead of more silence. The backup's size is
    not used: replaying WAL, not copying the backup, is what makes a restore long, and its
    length depends on the WAL since the backup, which no size foretells. Restores show their
    ETA as they run; to let a slow one finish anyway, set ``drill.restore_timeout`` above the RTO.
    """
    explicit = (settings.env.get("drill") or {}).get("restore_timeout")
    if explicit:
        return int(explicit)
    return int((settings.env.get("objectives") or {}).get("rto_seconds") or DEFAULT_RTO_SECONDS)


def name_taken(name: str) -> UsageError:
    """The refusal when a restore's name is in use for another target or by something aep-ops did not make."""
    return UsageError(f"a restore named {name!r} already exists for another target or was not made by aep-ops;"
                      f" pick another --name or `inv pitr.discard {name}`")
