"""Certificate lineages under the state directory: every issued version kept, one current.

    STATE_DIR/certs/ENV/NAME/
        lineage.json            the CA directory the lineage belongs to (production or staging)
        current                 the current version's number (replaced atomically)
        versions/0001/          privkey.pem (0600), cert.pem, chain.pem, fullchain.pem, meta.json
        versions/0002/ ...

A version is written into a hidden directory, fsynced and renamed into place, then ``current``
is switched: a crash leaves either the old version current or the new one complete, never a
half-written key. Directories are 0700 and keys 0600. The previous versions stay for rollback
(the newest ``KEEP`` of them). A lineage never moves from a production CA to a staging one
(certbot refuses this too): a staging certificate must never replace a trusted one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aep_ops.base.atomicfile import replace_file
from aep_ops.base.errors import StateUnwritable, UsageError

KEEP = 5
FILES = ("privkey.pem", "cert.pem", "chain.pem", "fullchain.pem")


@dataclass(frozen=True)
class Version:
    """One stored certificate. ``key_pem`` is secret: never log it, never put it in an output."""

    number: int
    path: Path
    serial: str
    not_before: str
    not_after: str
    issuer: str
    domains: tuple[str, ...]
    key_type: str
    directory: str
    created_at: str

    @property
    def key_pem(self) -> str:
        return (self.path / "privkey.pem").read_text()

    @property
    def cert_pem(self) -> str:
        return (self.path / "cert.pem").read_text()

    @property
    def chain_pem(self) -> str:
        return (self.path / "chain.pem").read_text()

    @property
    def fullchain_pem(self) -> str:
        return (self.path / "fullchain.pem").read_text()

    def to_json(self) -> dict[str, Any]:
        """What may be shown: everything but the key."""
        data = asdict(self)
        data.update(path=str(self.path), domains=list(self.domains))
        return data

    def __repr__(self) -> str:
        return f"Version({self.number}, serial={self.serial}, not_after={self.not_after})"


def lineage_dir(settings: Any, name: str) -> Path:
    return settings.state_dir / "certs" / settings.env_name / name


def current(settings: Any, name: str) -> Version | None:
    """The current version of ``name``, or None before its first issuance."""
    base = lineage_dir(settings, name)
    try:
        number = int((base / "current").read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        raise StateUnwritable(f"{base / 'current'} is damaged (not a version number); put the number of a"
                              f" directory of {base / 'versions'} in it") from None
    return read_version(base / "versions" / f"{number:04d}")


def versions(settings: Any, name: str) -> list[Version]:
    """Every complete stored version, oldest first."""
    root = lineage_dir(settings, name) / "versions"
    if not root.is_dir():
        return []
    found = [read_version(p) for p in sorted(root.iterdir()) if p.name.isdigit() and (p / "meta.json").is_file()]
    return [v for v in found if v is not None]


def read_version(path: Path) -> Version | None:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except FileNotFoundError:
        return None
    return Version(number=int(path.name), path=path, serial=meta["serial"], not_before=meta["not_before"],
                   not_after=meta["not_after"], issuer=meta["issuer"], domains=tuple(meta["domains"]),
                   key_type=meta["key_type"], directory=meta["directory"], created_at=meta["created_at"])


def check_directory_switch(settings: Any, name: str, directory: str, *, staging: bool) -> None:
    """Refuse to put a staging certificate into a lineage that holds production ones."""
    recorded = _lineage_meta(settings, name)
    if staging and recorded.get("production_ca"):
        raise UsageError(f"certificate {name} was issued by the production CA {recorded.get('directory')};"
                         f" {directory} is a staging CA and its certificates are not trusted: refusing to switch"
                         " (use a new certificate name for staging)")


def save(settings: Any, name: str, *, key_pem: str, cert_pem: str, chain_pem: str, fullchain_pem: str,
         serial: str, not_before: datetime, not_after: datetime, issuer: str, domains: list[str],
         key_type: str, directory: str, staging: bool, now: datetime) -> Version:
    """Store a new version and make it current; returns it."""
    base = lineage_dir(settings, name)
    root = base / "versions"
    _mkdir_private(root)
    numbers = [int(p.name) for p in root.iterdir() if p.name.isdigit()]
    number = max(numbers, default=0) + 1
    final = root / f"{number:04d}"
    tmp = root / f".{number:04d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _mkdir_private(tmp)
    texts = dict(zip(FILES, (key_pem, cert_pem, chain_pem, fullchain_pem)))
    for file_name, text in texts.items():
        _write_private(tmp / file_name, text.encode())
    meta = {"serial": serial, "not_before": not_before.isoformat(), "not_after": not_after.isoformat(),
            "issuer": issuer, "domains": list(domains), "key_type": key_type, "directory": directory,
            "created_at": now.isoformat()}
    _write_private(tmp / "meta.json", (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
    os.rename(tmp, final)
    _fsync_dir(root)
    if not staging:
        replace_file(base / "lineage.json", json.dumps({"directory": directory, "production_ca": True}).encode())
    replace_file(base / "current", f"{number}\n".encode())
    _prune(root, keep_from=number - KEEP + 1)
    return read_version(final)


def _lineage_meta(settings: Any, name: str) -> dict[str, Any]:
    try:
        return json.loads((lineage_dir(settings, name) / "lineage.json").read_text())
    except FileNotFoundError:
        return {}


def _prune(root: Path, keep_from: int) -> None:
    for path in root.iterdir():
        if path.name.isdigit() and int(path.name) < keep_from:
            shutil.rmtree(path, ignore_errors=True)


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
