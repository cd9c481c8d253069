"""Units in the systemd unit directory: which are ours, what differs from the rendering,
writing and removing them atomically, enabling and disabling their timers.

Ours are the files named ``aep-ops-ENV-*`` whose header carries ``# aep-ops environment: ENV``
(so ``prod`` never touches ``prod-eu``'s units, nor a hand-written unit). With systemd running
(``/run/systemd/system``, sd_booted's test) and the real unit directory, timers are enabled
``--now`` and ``daemon-reload`` runs only when a file changed; otherwise (an image being built,
a container, the tests) they are enabled offline with ``systemctl --root``, effective at boot."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from aep_ops.base.atomicfile import replace_file
from aep_ops.base.errors import ConfigError, StepFailed
from aep_ops.timers.units import OWNER_LINE

SYSTEM_DIR = Path("/etc/systemd/system")
CALL_SECONDS = 60


def owned(directory: Path, env: str) -> dict[str, str]:
    """File name -> text of this environment's units in ``directory``."""
    marker = OWNER_LINE.format(env=env)
    out = {}
    for path in sorted(directory.glob(f"aep-ops-{env}-*")):
        if path.suffix in (".service", ".timer") and path.is_file() and not path.is_symlink():
            text = path.read_text(errors="replace")
            if marker in text.splitlines():
                out[path.name] = text
    return out


def differences(rendered: dict[str, str], installed: dict[str, str]) -> tuple[list[str], list[str]]:
    """(files to write, files to remove): new or changed ones, and ours that are no longer rendered."""
    write = sorted(name for name, text in rendered.items() if installed.get(name) != text)
    remove = sorted(set(installed) - set(rendered))
    return write, remove


def write(directory: Path, files: dict[str, str], names: list[str]) -> None:
    for name in names:
        replace_file(directory / name, files[name].encode())


def remove(directory: Path, names: list[str]) -> None:
    for name in names:
        try:
            (directory / name).unlink()
        except FileNotFoundError:
            pass


def enabled(directory: Path, timer: str) -> bool:
    return (directory / "timers.target.wants" / timer).is_symlink()


class Systemctl:
    """systemctl for one unit directory: live (``--now``, daemon-reload) or offline (``--root``)."""

    def __init__(self, program: str, directory: Path) -> None:
        self.program = program
        self.directory = directory
        self.root = _root_of(directory)
        self.live = self.root == Path("/") and Path("/run/systemd/system").is_dir()

    @property
    def mode(self) -> str:
        return "live" if self.live else f"offline (--root={self.root})"

    def enable(self, timers: list[str]) -> None:
        if timers:
            self._call(["enable", *(["--now"] if self.live else []), "--", *timers])

    def disable(self, timers: list[str]) -> None:
        if timers:
            self._call(["disable", *(["--now"] if self.live else []), "--", *timers])

    def daemon_reload(self) -> bool:
        """True when it reloaded (only a running systemd has anything to reload)."""
        if not self.live:
            return False
        self._call(["daemon-reload"])
        return True

    def _call(self, args: list[str]) -> None:
        argv = [self.program, *([] if self.live else [f"--root={self.root}"]), "--no-ask-password", *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=CALL_SECONDS,
                                  stdin=subprocess.DEVNULL, env={**os.environ, "SYSTEMD_COLORS": "0"})
        except FileNotFoundError:
            raise ConfigError(f"timers.systemctl: {self.program} does not exist (install systemd, or set it)") from None
        if done.returncode != 0:
            raise StepFailed(f"systemctl {' '.join(args[:2])} failed (exit {done.returncode}):"
                             f" {(done.stderr or done.stdout).strip()[:300]}")


def _root_of(directory: Path) -> Path:
    """``/`` for /etc/systemd/system, ``R`` for R/etc/systemd/system: the only places systemctl
    can enable units in."""
    parts = directory.parts
    if parts[-3:] != ("etc", "systemd", "system"):
        raise ConfigError(f"timers.unit_dir {str(directory)[:80]}: use /etc/systemd/system, or ROOT/etc/systemd/system"
                          " for an image or a test root")
    return Path(*parts[:-3]) if len(parts) > 3 else Path("/")
