"""Files and directories the postgres OS user must own or reach.

aep-ops runs as root but PostgreSQL and pgBackRest run as ``postgres``: a data
directory must be 0700 and owned by postgres, every parent must be traversable by it,
and config files are written atomically with their final owner and mode (no window in
which a secret-bearing file is world-readable).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import tempfile
from pathlib import Path

from aep_ops.base.errors import UsageError


def _ids(owner: str | None, group: str | None) -> tuple[int, int]:
    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    if group:
        gid = grp.getgrnam(group).gr_gid
    else:
        gid = pwd.getpwnam(owner).pw_gid if owner else -1
    return uid, gid


def _apply(path: Path, owner: str | None, group: str | None, mode: int) -> bool:
    """chown/chmod if needed (chown only as root); return whether anything changed."""
    st = path.stat()
    changed = False
    uid, gid = _ids(owner, group)
    if os.geteuid() == 0 and ((uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid)):
        os.chown(path, uid, gid)
        changed = True
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def ensure_dir(path: str | os.PathLike[str], *, owner: str | None, mode: int, group: str | None = None) -> bool:
    """Create ``path`` (missing parents get 0755) with owner and mode; return whether it changed."""
    path = Path(path)
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for parent in reversed(missing[1:]):
        parent.mkdir()
        os.chmod(parent, 0o755)
    created = not path.exists()
    if created:
        path.mkdir()
    return _apply(path, owner, group, mode) or created


def ensure_empty_dir(path: str | os.PathLike[str], *, owner: str, mode: int) -> None:
    """A new or empty directory for a restore; refuse one that holds anything."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(f"restore target {path} exists and is not an empty directory; choose a new directory")
    check_traversable(path, owner)
    ensure_dir(path, owner=owner, mode=mode)


def ensure_file(path: str | os.PathLike[str], *, owner: str, mode: int) -> None:
    path = Path(path)
    if not path.exists():
        path.touch(mode=mode)
    _apply(path, owner, None, mode)


def write_file(
    path: str | os.PathLike[str], content: str, *, mode: int, owner: str | None, group: str | None = None
) -> bool:
    """Atomically give ``path`` this content, owner and mode; return whether anything changed."""
    path = Path(path)
    data = content.encode()
    if path.exists() and path.read_bytes() == data:
        return _apply(path, owner, group, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        uid, gid = _ids(owner, group)
        if os.geteuid() == 0:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def check_traversable(path: str | os.PathLike[str], user: str) -> None:
    """Refuse a path whose parents ``user`` cannot traverse (pytest's 0700 tmp_path, /root...)."""
    pw = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, pw.pw_gid))
    for parent in Path(os.path.abspath(path)).parents:
        if not parent.exists():
            continue  # ensure_dir creates missing parents with mode 0755
        st = parent.stat()
        if st.st_uid == pw.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise UsageError(
                f"{user} cannot traverse {parent} (mode {stat.S_IMODE(st.st_mode):o}) to reach {path}; "
                f"choose a directory {user} can reach, or `chmod o+x {parent}`"
            )
