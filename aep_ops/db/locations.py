"""Where an environment's database and backups live, resolved from the configuration.

Backend ``local`` (the embedded default): one "AEP" PostgreSQL 15 cluster under
STATE_DIR/pg/aep-source, run by the postgres OS user on its own port, archiving WAL with
pgBackRest into STATE_DIR/pgbackrest/repo (plus an optional encrypted repo2 on S3).
Restored copies live under STATE_DIR/pg/restores/NAME with a ``restore.json`` that marks
them as created by aep-ops (only those may be discarded).

"The active source" is the one database every runbook acts on (db.url, db.setup, backup.*,
dr.drill, pitr.restore): the original (named ``aep-source``) until ``pitr.cutover`` points
STATE_DIR/pg/active.json at a restored copy, then that copy (its datadir, port, socket and its
own pgBackRest stanza), and the original again after a cut back. ``local_db`` resolves it.

Nothing here starts or changes anything: it only says where things are.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aep_ops.base.errors import UsageError

DEFAULT_PORT = 54315
DEFAULT_DBNAME = "aep"
DEFAULT_STANZA = "aep"
SOURCE_NAME = "aep-source"  # the original source's name in pitr.list / pitr.cutover / active.json
ACTIVE_POINTER = "active.json"
RESTORE_MARKER = "restore.json"
UNREADABLE = "unreadable"  # the status of a listed copy whose marker is damaged


@dataclass
class LocalDb:
    """The local source cluster and its pgBackRest stanza."""

    cluster: Any  # aep_ops.pg.cluster.LocalCluster
    backrest: Any  # aep_ops.pg.pgbackrest.PgBackRest
    dbname: str
    archive_timeout: int
    extra_settings: dict[str, str]
    name: str = SOURCE_NAME  # SOURCE_NAME, or the restored copy this LocalDb is

    def source_settings(self) -> dict[str, str]:
        """postgresql.conf of a PITR-ready source (FIELD-NOTES: archive_timeout bounds a quiet RPO,
        track_commit_timestamp lets a drill predict exactly what a target keeps)."""
        return {
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": self.backrest.archive_command(),
            "archive_timeout": f"{self.archive_timeout}s",
            "track_commit_timestamp": "on",
            "max_wal_senders": "4",
            **self.extra_settings,
        }

    def dsn(self, dbname: str | None = None) -> str:
        return self.cluster.dsn(dbname or self.dbname)


def pg_root(settings: Any) -> Path:
    return settings.state_dir / "pg"


def restores_dir(settings: Any) -> Path:
    return pg_root(settings) / "restores"


def active_pointer(settings: Any) -> Path:
    return pg_root(settings) / ACTIVE_POINTER


def active_record(settings: Any) -> dict[str, Any]:
    """What the last cutover wrote (name, dsn, previous, previous_name, at, run_id); {} before any."""
    path = active_pointer(settings)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable ({exc}); fix or remove it, then `inv pitr.cutover NAME`") from None
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise UsageError(f"{path}: no 'name'; fix or remove it, then `inv pitr.cutover NAME`")
    return record


def active_name(settings: Any) -> str:
    """The database the application uses now: ``aep-source`` or the name of a restored copy."""
    return active_record(settings).get("name") or SOURCE_NAME


def local_db(settings: Any, name: str | None = None) -> LocalDb:
    """The active source (or the database ``name``): the one function every runbook resolves it with."""
    from aep_ops.pg.cluster import LocalCluster
    from aep_ops.pg.pgbackrest import PgBackRest

    name = name or active_name(settings)
    pg = settings.env.get("postgres") or {}
    backup = settings.env.get("backup") or {}
    stanza = backup.get("stanza") or DEFAULT_STANZA
    if name == SOURCE_NAME:
        root = pg_root(settings) / "aep-source"
        cluster = LocalCluster(root / "data", int(pg.get("port") or DEFAULT_PORT), root / "sock",
                               os_user=pg.get("os_user") or "postgres", bindir=pg.get("bindir"))
        config = backrest_config(settings, cluster)
    else:
        copy = restored_copy(settings, name)
        if copy is None:
            raise UsageError(f"the active database {name} ({active_pointer(settings)}) is gone; cut back with"
                             f" `inv pitr.cutover {SOURCE_NAME}` (or another copy in `inv pitr.list`)")
        cluster = copy.cluster(settings)
        config = backrest_config(settings, cluster, stanza=copy_stanza(stanza, name),
                                 config_name=f"pgbackrest-{name}.conf")
    backrest = PgBackRest(config, os_user=cluster.os_user,
                          **({"binary": backup["pgbackrest_bin"]} if backup.get("pgbackrest_bin") else {}))
    return LocalDb(cluster=cluster, backrest=backrest, dbname=pg.get("dbname") or DEFAULT_DBNAME,
                   archive_timeout=int(pg.get("archive_timeout") or 60),
                   extra_settings=dict(pg.get("settings") or {}), name=name)


def copy_stanza(stanza: str, name: str) -> str:
    """A copy that becomes a primary archives into a stanza of its own (see local_cutover)."""
    return f"{stanza}-{name}"


def backrest_config(settings: Any, cluster: Any, *, stanza: str | None = None,
                    config_name: str = "pgbackrest.conf") -> Any:
    """The pgBackRest configuration of this environment (secrets of repo2 resolved now); one file
    per stanza, all stanzas in the same repositories (each has its own archive and backups there)."""
    from aep_ops.pg.pgbackrest import PgBackRestConfig, Timeouts

    backup = settings.env.get("backup") or {}
    base = settings.state_dir / "pgbackrest"
    return PgBackRestConfig(
        stanza=stanza or backup.get("stanza") or DEFAULT_STANZA,
        config_path=str(base / config_name),
        repo1_path=backup.get("repo_path") or str(base / "repo"),
        log_path=str(base / "log"),
        lock_path=str(base / "lock"),
        spool_path=str(base / "spool"),
        pg1_path=str(cluster.datadir),
        pg1_port=cluster.port,
        pg1_socket_path=str(cluster.socket_dir),
        pg1_user=cluster.os_user,
        repo1_retention_full=int(backup.get("retention_full") or 2),
        process_max=int(backup.get("process_max") or 2),
        repo2=_s3_repo(settings, backup.get("s3")),
        timeouts=Timeouts.from_settings(backup.get("timeouts")),
    )


def _s3_repo(settings: Any, s3: dict | None) -> Any:
    if not s3 or not s3.get("bucket"):
        return None
    from aep_ops.pg.pgbackrest import S3Repo

    missing = [k for k in ("endpoint", "region", "key", "key_secret", "cipher_pass") if not s3.get(k)]
    if missing:
        raise UsageError(f"environments.{settings.env_name}.backup.s3: set {', '.join(missing)}"
                         " (repo2 is encrypted with AES-256; cipher_pass is its passphrase)")
    return S3Repo(bucket=s3["bucket"], endpoint=s3["endpoint"], region=s3["region"],
                  key=settings.secret(s3["key"]), key_secret=settings.secret(s3["key_secret"]),
                  port=int(s3.get("port") or 443), path=s3.get("path") or "/pgbackrest",
                  verify_tls=s3.get("verify_tls", True) is not False, ca_file=s3.get("ca_file"),
                  cipher_pass=settings.secret(s3["cipher_pass"]),
                  retention_full=int(s3.get("retention_full") or 2))


# --- restored copies ---------------------------------------------------------------------


@dataclass
class RestoredCopy:
    """A cluster aep-ops restored (local): where it is and what it holds."""

    name: str
    base: Path
    meta: dict[str, Any]

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    def cluster(self, settings: Any) -> Any:
        from aep_ops.pg.cluster import LocalCluster

        if self.meta.get("status") == UNREADABLE:
            raise UsageError(f"{self.meta['problem']}; remove {self.base} by hand")
        pg = settings.env.get("postgres") or {}
        return LocalCluster(self.datadir, int(self.meta["port"]), self.base / "sock",
                            os_user=pg.get("os_user") or "postgres", bindir=pg.get("bindir"))

    def save(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        tmp = self.base / (RESTORE_MARKER + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True, default=str))
        os.replace(tmp, self.base / RESTORE_MARKER)


class UnreadableRestore(UsageError):
    """A restore directory whose ``restore.json`` cannot be read or lacks what aep-ops needs:
    nothing is inferred from it (not even whether aep-ops made it), a person decides."""

    def __init__(self, name: str, marker: Path, reason: str) -> None:
        self.name, self.marker, self.reason = name, marker, reason
        super().__init__(f"{marker}: {reason}; aep-ops will not guess what this copy is. To remove it by hand:"
                         f" pg_ctl -D {marker.parent / 'data'} stop -m immediate (if it runs), then"
                         f" rm -rf {marker.parent}")


def read_marker(name: str, marker: Path) -> dict[str, Any]:
    """The record of a restored copy, checked for the keys every reader relies on."""
    from aep_ops.config.schema import preview, preview_text

    try:
        meta = json.loads(marker.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise UnreadableRestore(name, marker, f"cannot read it ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableRestore(name, marker, f"not valid JSON ({preview_text(str(exc))})") from None
    if not isinstance(meta, dict):
        raise UnreadableRestore(name, marker, "not a JSON object")
    port = meta.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UnreadableRestore(name, marker, f"no valid 'port' (got {preview(port)})")
    if not isinstance(meta.get("status"), str):
        raise UnreadableRestore(name, marker, "no 'status'")
    if meta["status"] == "promoted" and not isinstance(meta.get("dsn"), str):
        raise UnreadableRestore(name, marker, "status 'promoted' but no 'dsn'")
    return {**meta, "name": name}


def restored_copy(settings: Any, name: str) -> RestoredCopy | None:
    """The copy named ``name`` if aep-ops created it (its marker file exists), else None;
    UnreadableRestore (exit 2, with how to remove it by hand) if its marker is damaged."""
    base = restores_dir(settings) / name
    marker = base / RESTORE_MARKER
    if not marker.is_file():
        return None
    return RestoredCopy(name=name, base=base, meta=read_marker(name, marker))


def restored_copies(settings: Any) -> list[RestoredCopy]:
    """Every copy aep-ops created; one with a damaged marker is listed with ``status`` "unreadable"
    and ``problem`` "<path>: <reason>" (so that one bad file does not hide the others)."""
    root = restores_dir(settings)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.name.startswith("."):  # .removing-*: being deleted
            continue
        try:
            copy = restored_copy(settings, path.name)
        except UnreadableRestore as exc:
            problem = f"{exc.marker}: {exc.reason}"
            copy = RestoredCopy(name=path.name, base=path, meta={"name": path.name, "status": UNREADABLE, "problem": problem})
        if copy is not None:
            found.append(copy)
    return found


def check_restore_name(name: str, *, allow_source: bool = False) -> str:
    """A valid copy name; ``aep-source`` (the original) only where it may be named (cutover, discard's refusal)."""
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", name or ""):
        raise UsageError(f"--name {name!r}: use 1-41 lower-case letters, digits and dashes")
    if name == SOURCE_NAME and not allow_source:
        raise UsageError(f"--name {name}: that is the original source's name; pick another --name")
    return name
