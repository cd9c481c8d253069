"""A patchable test fleet: real sshd hosts with real HTTP health endpoints, a stand-in package
manager, and reboots that really take SSH and HTTP away and bring them back.

- **Stand-in package manager.** All test hosts share this machine's real apt, so the patch
  commands (``patching.pending_command/upgrade_command/reboot_command``) are one small shell
  script that keeps each host's "packages" in that host's directory, found from the
  server address in ``$SSH_CONNECTION``: ``pending`` lists them, ``upgrade`` empties the list
  (and may leave the reboot marker), ``reboot`` asks the test for a reboot. Every call is
  logged per host, so a test can prove which hosts were touched. A test can hold a host's
  upgrade mid-way (``hold_upgrade``: it blocks on a fifo until ``release_upgrade``), and a host
  whose updates real apt lists (``offer_updates``) is "upgraded" by withdrawing them.
- **A private /run and apt per host.** ``/var/run/reboot-required`` and the package lists are
  per host in the field; here each sshd runs in its own mount namespace with per-host
  directories bound on /run, /etc/apt, /var/lib/apt/lists and /var/cache/apt (``unshare``),
  so the production probes read the real paths and see only their host's marker and package
  sources. ``offer_updates`` publishes a local repository with newer versions of packages this
  machine has installed: the real ``apt-get -s`` then has a known answer (dpkg's status is
  this machine's, read-only; nothing is ever installed). The same namespace hides this
  machine's root ~/.bashrc from SSH sessions (see WRAPPER).
- **Reboot.** A watcher thread sees a host's reboot request, stops its sshd (killing every
  session) and its health endpoint, clears its /run marker (as a boot clears the tmpfs),
  waits, and starts both again on the same address, port and host key.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.support.processes import release_fifo

WRAPPER = """#!/bin/sh
# sshd in its own mount namespace with a per-host /run (what a real host's tmpfs /run is) and
# per-host apt configuration, lists and cache (empty: no sources, nothing pending, until a test
# publishes some), and without this machine's ~/.bashrc (bash sources it for SSH commands;
# pyenv's rehash lock in it stalls concurrent sessions for up to 60 s, and a fleet host has no
# such thing).
for arg; do conf=$arg; done
run="$(dirname "$conf")/run"
apt="$(dirname "$conf")/apt"
mkdir -p "$run/sshd" "$apt/etc/apt.conf.d" "$apt/etc/preferences.d" "$apt/etc/sources.list.d" \\
  "$apt/lists/partial" "$apt/cache/archives/partial"
exec unshare --mount --propagation private /bin/sh -c '
  mount --bind "$0" /run &&
  mount --bind "$1/etc" /etc/apt && mount --bind "$1/lists" /var/lib/apt/lists &&
  mount --bind "$1/cache" /var/cache/apt &&
  { [ ! -e "$HOME/.bashrc" ] || mount --bind /dev/null "$HOME/.bashrc"; } &&
  shift && exec /usr/sbin/sshd "$@"' "$run" "$apt" "$@"
"""

STANDIN = """#!/bin/sh
# Stand-in package manager for tests (this machine's real apt is shared by every test host).
addr=$(printf '%s' "$SSH_CONNECTION" | awk '{print $3}')
dir="@BASE@/$addr"
[ -d "$dir" ] || { echo "stand-in: no host directory for $addr" >&2; exit 2; }
echo "$1" >> "$dir/calls"
case "$1" in
pending) cat "$dir/pending" 2>/dev/null; exit 0 ;;
upgrade)
  [ "$DEBIAN_FRONTEND" = noninteractive ] || { echo "stand-in: DEBIAN_FRONTEND is not set" >&2; exit 2; }
  if [ -p "$dir/hold-upgrade" ]; then  # the test holds the upgrade here until it releases the fifo
    echo $$ > "$dir/upgrade-held"; read -r _ < "$dir/hold-upgrade"; rm -f "$dir/hold-upgrade" "$dir/upgrade-held"
  fi
  if [ -e "$dir/fail-upgrade" ]; then echo "E: Sub-process /usr/bin/dpkg returned an error code (1)" >&2; exit 100; fi
  if [ -s "$dir/apt-repo/Packages" ]; then  # real apt lists the updates: "installing" withdraws them
    awk '/^Package: /{print "Unpacking " $2}' "$dir/apt-repo/Packages"
    awk '/^Package: /{print $2}' "$dir/apt-repo/Packages" >> "$dir/installed"; : > "$dir/apt-repo/Packages"
  fi
  if [ -s "$dir/pending" ]; then
    sed 's/^/Unpacking /' "$dir/pending"
    cat "$dir/pending" >> "$dir/installed"; : > "$dir/pending"
    if [ -e "$dir/needs-reboot" ]; then touch /var/run/reboot-required; fi
    if [ -e "$dir/break-health" ]; then echo 503 > "$dir/health-status"; fi
  fi
  exit 0 ;;
reboot) touch "$dir/reboot-requested"; exit 0 ;;
*) echo "stand-in: unknown command $1" >&2; exit 2 ;;
esac
"""


def private_host_wrapper(directory: Path) -> Path:
    """WRAPPER as an executable ``directory/sshd-private-run``: point aep_ops.testing.sshd.SSHD at
    it before starting hosts, and each gets its own /run and apt."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "sshd-private-run"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    return wrapper


def installed_version(package: str) -> tuple[str, str]:
    """(version, architecture) of ``package`` as this machine's dpkg has it installed."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version} ${Architecture}", package],
                         capture_output=True, text=True)
    fields = out.stdout.split()
    if out.returncode != 0 or len(fields) != 3 or fields[0] != "installed":
        raise RuntimeError(f"{package} is not installed on this machine: {out.stderr.strip() or out.stdout}")
    return fields[1], fields[2]


def offer_updates(apt_dir: Path, repo: Path, packages: list[str], *, suite: str | None = None) -> dict[str, str]:
    """Publish ``repo``, a local apt repository with a newer version of each installed package,
    in the sources of the host whose private apt is ``apt_dir``; return name -> offered version.
    With ``suite`` the repository has a Release naming it (``apt list`` shows it), else none
    (a flat repository, shown as "unknown"). apt only resolves these: nothing is downloaded."""
    repo.mkdir(parents=True, exist_ok=True)
    offered, stanzas, arches = {}, [], {"all"}
    for name in packages:
        version, arch = installed_version(name)
        offered[name] = f"{version}+aep1"  # sorts after the installed version (dpkg's rules)
        arches.add(arch)
        stanzas.append(f"Package: {name}\nVersion: {offered[name]}\nArchitecture: {arch}\n"
                       "Maintainer: aep-ops tests <tests@example.invalid>\n"
                       f"Filename: ./{name}.deb\nSize: 1\nDescription: a newer {name}, offered by a test\n")
    index = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(index)
    if suite:
        (repo / "Release").write_text(
            f"Origin: aep-ops-tests\nLabel: aep-ops-tests\nSuite: {suite}\nCodename: {suite}\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\nArchitectures: {' '.join(sorted(arches))}\n"
            f"SHA256:\n {hashlib.sha256(index).hexdigest()} {len(index)} Packages\n")
    (apt_dir / "etc").mkdir(parents=True, exist_ok=True)
    with open(apt_dir / "etc" / "sources.list", "a") as sources:
        sources.write(f"deb [trusted=yes] file:{repo} ./\n")
    return offered


class HealthServer:
    """A threaded HTTP server answering GET /health with 200, or with the code written in
    ``status_file`` (e.g. 503). ``stop()``/``start()`` keep the address and port."""

    def __init__(self, address: str, status_file: Path) -> None:
        self.address, self.port, self.status_file = address, 0, status_file
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}/health"

    def start(self) -> HealthServer:
        status_file = self.status_file

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                code = int(status_file.read_text().strip()) if status_file.exists() else 200
                body = b"ok\n" if code == 200 else b"unhealthy\n"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self._server = http.server.ThreadingHTTPServer((self.address, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


class HangServer:
    """Accepts TCP connections on an SSH address and never says a word (a hung host)."""

    def __init__(self, address: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, port))
        self.sock.listen(16)
        self.conns: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self._stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        except OSError:
            pass
        self.sock.close()
        for conn in self.conns:
            conn.close()


@dataclass
class FleetHost:
    name: str
    ssh: Any  # aep_ops.testing.sshd.SshTestHost
    health: HealthServer
    dir: Path
    instance_id: str | None = None
    hang: HangServer | None = None
    placeholder: socket.socket | None = None
    reboots: int = 0

    @property
    def run_dir(self) -> Path:
        return self.ssh.directory / "run"

    def calls(self) -> list[str]:
        path = self.dir / "calls"
        return path.read_text().split() if path.exists() else []

    def pending(self) -> list[str]:
        path = self.dir / "pending"
        return path.read_text().split() if path.exists() else []

    def set_pending(self, packages: list[str], *, reboot: bool = True) -> None:
        (self.dir / "pending").write_text("".join(f"{p}\n" for p in packages))
        (self.dir / "needs-reboot").unlink(missing_ok=True)
        if reboot:
            (self.dir / "needs-reboot").touch()

    @property
    def apt_dir(self) -> Path:
        """The host's private /etc/apt, apt lists and cache (see WRAPPER)."""
        return self.ssh.directory / "apt"

    def offer_updates(self, packages: list[str]) -> dict[str, str]:
        """Real apt on this host lists ``packages`` as upgradable (until the stand-in upgrades it)."""
        return offer_updates(self.apt_dir, self.dir / "apt-repo", packages)

    def installed(self) -> list[str]:
        """Every package the stand-in upgrade installed, once per installation."""
        path = self.dir / "installed"
        return path.read_text().split() if path.exists() else []

    def hold_upgrade(self) -> None:
        """The next upgrade on this host blocks mid-way until ``release_upgrade``."""
        os.mkfifo(self.dir / "hold-upgrade")

    def held_upgrade_pid(self) -> int | None:
        """Pid of the upgrade blocked by ``hold_upgrade`` (None until it is there)."""
        try:
            return int((self.dir / "upgrade-held").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def release_upgrade(self) -> bool:
        """Let a held upgrade go on; False when none is waiting on the fifo."""
        return release_fifo(self.dir / "hold-upgrade")

    def flag(self, name: str, on: bool = True) -> None:
        (self.dir / name).touch() if on else (self.dir / name).unlink(missing_ok=True)

    def ssh_down(self) -> None:
        """Stop sshd but keep its address: a bound, non-listening socket refuses connections
        (what a host whose sshd is down does) and keeps other test processes on this machine,
        which pick free loopback addresses, from taking the address meanwhile."""
        self.ssh.stop()
        self.placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR: the killed sshd's connections linger in TIME_WAIT; a probe without it
        # (sshd.py's _bindable) still sees the address as taken.
        self.placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.placeholder.bind((self.ssh.address, self.ssh.port))

    def ssh_up(self) -> None:
        if self.placeholder is not None:
            self.placeholder.close()
            self.placeholder = None
        self.ssh.start()

    def hang_ssh(self) -> None:
        """sshd gone, and something on its port that accepts and never answers."""
        self.ssh.stop()
        self.hang = HangServer(self.ssh.address, self.ssh.port)  # listening: the address stays ours

    def unhang_ssh(self) -> None:
        if self.hang is not None:
            self.hang.close()
            self.hang = None
        self.ssh.start()


@dataclass
class PatchFleet:
    ssh_fleet: Any  # ssh_host_factory
    base: Path
    reboot_delay: float = 0.5
    on_reboot: Callable[[FleetHost], None] | None = None
    hosts: list[FleetHost] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.standin = self.base / "standin.sh"
        self.standin.write_text(STANDIN.replace("@BASE@", str(self.base)))
        self.standin.chmod(0o755)
        self.wrapper = private_host_wrapper(self.base)
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def add(self, count: int) -> list[FleetHost]:
        for _ in range(count):
            ssh = self.ssh_fleet()
            host_dir = self.base / ssh.address
            host_dir.mkdir()
            health = HealthServer(ssh.address, host_dir / "health-status").start()
            self.hosts.append(FleetHost(f"h{len(self.hosts) + 1:02d}", ssh, health, host_dir))
        return self.hosts[-count:]

    def by_name(self, name: str) -> FleetHost:
        return next(h for h in self.hosts if h.name == name)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for host in list(self.hosts):
                request = host.dir / "reboot-requested"
                if request.exists():
                    request.unlink()
                    threading.Thread(target=self._reboot, args=(host,), daemon=True).start()
            time.sleep(0.05)

    def _reboot(self, host: FleetHost) -> None:
        time.sleep(0.1)  # let the reboot command return, as `shutdown -r now` does
        if self.on_reboot is not None:
            self.on_reboot(host)
        host.ssh_down()
        host.health.stop()
        (host.run_dir / "reboot-required").unlink(missing_ok=True)  # a boot clears the tmpfs
        time.sleep(self.reboot_delay)
        host.ssh_up()
        host.health.start()
        host.reboots += 1

    def close(self) -> None:
        self._stop.set()
        for host in self.hosts:
            host.release_upgrade()  # nothing stays blocked on a fifo after the test
            if host.hang is not None:
                host.hang.close()
            if host.placeholder is not None:
                host.placeholder.close()
            host.health.stop()
