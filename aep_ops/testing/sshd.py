"""Real sshd hosts on this machine for tests: one sshd per host, each on its own loopback
address, with its own host key and a known_hosts file written from that key.

The SSH executor is tested against real sshd processes, not mocks, so host-key checking,
quoting through a remote shell, timeouts and unreachable hosts behave as in the field.
Usable outside pytest (``with SshFleet(dir) as fleet: fleet.add()``) for benchmarks and
demos. Nothing here imports paramiko at module import.
"""

from __future__ import annotations

import base64
import functools
import getpass
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pytest

from aep_ops.base.errors import ToolMissing
from aep_ops.testing.ports import claim

if TYPE_CHECKING:  # pragma: no cover
    from aep_ops.executors.ssh import SshExecutor

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "ssh-keygen"
DEFAULT_PORT = 2222
START_TIMEOUT = 5.0
# How a test host hides this machine's ~/.bashrc (see _without_login_rc): "mount" (/dev/null bound
# over it in sshd's own mount namespace), "home" (the sessions get a HOME of their own: for
# machines without mount namespaces, e.g. an unprivileged container or a chroot) or "none".
# Unset: "mount" where it works here, else "home". Not an AEP_OPS_* name: the tests' isolation
# fixture removes those.
ISOLATION_ENV = "AEP_TEST_SSHD_ISOLATION"
ISOLATIONS = ("mount", "home", "none")

# Loopback addresses handed out in this process (127.0.0.11 upwards); never reused, so a
# stopped host's address cannot be taken by a new host while it is "rebooting".
_next_octet = itertools.count(11)
_octet_lock = threading.Lock()


def require_tools() -> None:
    """Fail loudly (never skip): a missing sshd is a broken test machine, not a reason to pass."""
    missing = [t for t in (SSHD, SSH_KEYGEN) if shutil.which(t) is None]
    if missing:
        raise ToolMissing(
            f"{', '.join(missing)} not found: the SSH tests need openssh-server and openssh-client. "
            "Run `make test`, which installs them (scripts/bootstrap-system.sh)."
        )


def generate_key(path: Path, comment: str = "aep-ops-test") -> str:
    """Create an ed25519 key pair at ``path`` (no passphrase); return the public line."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return Path(f"{path}.pub").read_text().strip()


def public_key_fingerprint(public_line: str) -> str:
    """SHA256 fingerprint of an OpenSSH public key line, as ``ssh-keygen -l`` prints it."""
    from aep_ops.executors.ssh import fingerprint

    return fingerprint(base64.b64decode(public_line.split()[1]))


def known_hosts_line(address: str, port: int, public_line: str) -> str:
    """A known_hosts entry for ``address:port`` (``[addr]:port`` form unless port 22)."""
    name = address if port == 22 else f"[{address}]:{port}"
    kind, blob = public_line.split()[:2]
    return f"{name} {kind} {blob}"


class SshTestHost:
    """One sshd on its own loopback address; ``stop()``/``start()`` simulate a reboot
    (same address, port and host key)."""

    def __init__(self, directory: Path, client_key: Path, *, address: str | None = None, port: int | None = None,
                 isolation: str | None = None):
        require_tools()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.isolation = isolation or login_rc_isolation()
        if self.isolation not in ISOLATIONS:
            raise ValueError(f"isolation {self.isolation!r}: expected one of {', '.join(ISOLATIONS)}")
        self.home = self.directory / "home"  # the sessions' HOME under "home" isolation
        self.identity = Path(client_key)
        self.user = getpass.getuser()
        self.host_key = self.directory / "ssh_host_ed25519_key"
        self.host_public_key = generate_key(self.host_key, comment="aep-ops-test-host")
        self.host_key_fingerprint = public_key_fingerprint(self.host_public_key)
        self.known_hosts = self.directory / "known_hosts"
        self.log_path = self.directory / "sshd.log"
        self.pidfile = self.directory / "sshd.pid"
        self._fixed = (address, port)
        self.address = address or ""
        self.port = port or DEFAULT_PORT
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def known_hosts_line(self) -> str:
        return known_hosts_line(self.address, self.port, self.host_public_key)

    def start(self) -> SshTestHost:
        """Start sshd and return once it has sent its SSH banner."""
        if self.running:
            return self
        _ensure_privsep_dir()
        if self.address:  # a restart, or an address fixed by the caller
            try:
                self._spawn()
            except _AddressInUse as exc:
                raise RuntimeError(f"cannot start sshd on {self.address}:{self.port}, it is taken: {exc}") from exc
            return self
        for _ in range(20):  # another test run on this machine may hold an address
            self.address, self.port = _free_address(self._fixed[1])
            try:
                self._spawn()
                return self
            except _AddressInUse:
                continue
        raise RuntimeError("no free loopback address for a test sshd after 20 tries")

    def stop(self) -> None:
        """Kill sshd and every session it started (as a reboot would); idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pid in [*_descendants(proc.pid), *_session_processes(self.address, self.port), proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=5)
        self.pidfile.unlink(missing_ok=True)

    close = stop

    def executor(self, **overrides: Any) -> SshExecutor:
        """An SshExecutor for this host with its identity and known_hosts (short timeouts)."""
        from aep_ops.executors.ssh import SshExecutor

        options: dict[str, Any] = {
            "port": self.port,
            "user": self.user,
            "identity": self.identity,
            "known_hosts": self.known_hosts,
            "connect_timeout": 5,
        }
        options.update(overrides)
        return SshExecutor(self.address, **options)

    def _spawn(self) -> None:
        config = self.directory / "sshd_config"
        config.write_text(self._config())
        self.pidfile.unlink(missing_ok=True)
        self.known_hosts.write_text(self.known_hosts_line() + "\n")
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                _without_login_rc([SSHD, "-D", "-e", "-f", str(config)], self.isolation),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._proc = proc
        try:
            _wait_for_banner(proc, self.address, self.port, self.log_path, self.pidfile)
        except BaseException:
            self.stop()
            raise

    def _config(self) -> str:
        authorized = Path(f"{self.identity}.pub")
        home = []
        if self.isolation == "home":
            self.home.mkdir(exist_ok=True)
            home = [f"SetEnv HOME={self.home}"]  # applied after sshd's own HOME, so it wins
        return "\n".join(
            [
                *home,
                f"ListenAddress {self.address}:{self.port}",
                f"HostKey {self.host_key}",
                f"PidFile {self.pidfile}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "Subsystem sftp internal-sftp",  # as Debian's default sshd: logs.ship reads files over SFTP
                "LogLevel ERROR",
                "",
            ]
        )


class SshFleet:
    """Many SshTestHosts sharing one client key, plus a combined known_hosts file."""

    def __init__(self, directory: Path, client_key: Path | None = None):
        require_tools()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if client_key is None:
            client_key = self.directory / "id_ed25519"
            if not client_key.exists():
                generate_key(client_key)
        self.identity = Path(client_key)
        self.known_hosts = self.directory / "known_hosts"
        self.hosts: list[SshTestHost] = []

    host_class: type[SshTestHost] = SshTestHost  # a subclass may change how hosts are configured

    def add(self) -> SshTestHost:
        """Start one more host and add its key to the fleet's known_hosts."""
        host = self.host_class(self.directory / f"host{len(self.hosts) + 1}", self.identity)
        self.hosts.append(host)
        host.start()
        with open(self.known_hosts, "a") as f:
            f.write(host.known_hosts_line() + "\n")
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.stop()

    def __enter__(self) -> SshFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- pytest fixtures ------------------------------------------------------------------------


@pytest.fixture
def ssh_host_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshFleet]:
    """Call it (``ssh_host_factory()``) for each host you need; all are stopped at teardown.
    The fleet object also offers ``.hosts``, ``.known_hosts`` (all hosts) and ``.identity``."""
    fleet = _CallableFleet(tmp_path_factory.mktemp("sshd"), _session_client_key(tmp_path_factory))
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def ssh_host(ssh_host_factory: SshFleet) -> SshTestHost:
    """One running test sshd host."""
    return ssh_host_factory.add()


class _CallableFleet(SshFleet):
    __call__ = SshFleet.add


def _session_client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One client key pair per test session, authorized on every test host. Kept under the
    session's base temp dir (not a fixture of its own: the plugin exports only the two above)."""
    require_tools()
    key = tmp_path_factory.getbasetemp() / "ssh-client" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(exist_ok=True)
        generate_key(key)
    return key


# -- helpers --------------------------------------------------------------------------------


class _AddressInUse(Exception):
    pass


def _ensure_privsep_dir() -> None:
    path = Path("/run/sshd")
    if not path.is_dir():
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.chmod(0o755)


def _free_address(port: int | None) -> tuple[str, int]:
    """Next loopback address whose port (2222 unless given) is free to bind right now, reserved for
    this process with the shared port allocator's lock (another pytest session skips it)."""
    want = port or DEFAULT_PORT
    while True:
        with _octet_lock:
            n = next(_next_octet)
        hi, lo = divmod(n, 256)
        if hi > 255:
            raise RuntimeError("ran out of loopback addresses for test sshd hosts")
        if lo in (0, 255):
            continue
        address = f"127.0.{hi}.{lo}"
        if claim("sshd", want, address):
            return address, want


def login_rc_isolation() -> str:
    """How test hosts hide ~/.bashrc here: $AEP_TEST_SSHD_ISOLATION if set, else "mount" where
    a mount namespace can be made (probed once per process), else "home"."""
    forced = os.environ.get(ISOLATION_ENV, "").strip()
    if forced:
        if forced not in ISOLATIONS:
            raise ValueError(f"{ISOLATION_ENV}={forced!r}: expected one of {', '.join(ISOLATIONS)}")
        return forced
    if not (Path.home() / ".bashrc").exists():
        return "none"  # nothing to hide
    return "mount" if _mount_namespace_works() else "home"


@functools.lru_cache(maxsize=1)
def _mount_namespace_works() -> bool:
    """Can this process run the "mount" wrapper? Not as a non-root user, nor in an unprivileged
    container or a chroot ("cannot change root filesystem propagation")."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(_without_login_rc(["/bin/true"], "mount"), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
    return probe.returncode == 0


def _without_login_rc(argv: list[str], isolation: str) -> list[str]:
    """Hide this machine's ~/.bashrc from the test host's SSH sessions.

    bash sources ~/.bashrc for every SSH command; on machines whose ~/.bashrc runs
    `pyenv init` its rehash lock stalls concurrent sessions for up to 60 s, which no real
    fleet host has. "mount": sshd runs in its own mount namespace with /dev/null bound over the
    file. "home" needs no wrapper: the sessions' HOME (SetEnv in sshd_config) has no .bashrc,
    and bash looks for ~/.bashrc in $HOME.
    """
    rc = Path.home() / ".bashrc"
    if isolation != "mount" or not rc.exists():
        return argv
    return ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
            'mount --bind /dev/null "$0" && exec "$@"', str(rc), *argv]


def _wait_for_banner(proc: subprocess.Popen[bytes], address: str, port: int, log: Path, pidfile: Path) -> None:
    """Ready = our sshd wrote its PidFile (it does so after binding) and a banner arrives.
    The PidFile check makes sure the banner is not from someone else's sshd on that port."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace").strip()
            if "Address already in use" in text or "Cannot bind any address" in text:
                raise _AddressInUse(text)
            raise RuntimeError(f"sshd for {address}:{port} exited with {proc.returncode}: {text[-500:]}")
        if not _pid_in(pidfile, proc.pid):
            time.sleep(0.02)
            continue
        try:
            with socket.create_connection((address, port), timeout=1) as s:
                if s.recv(256).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"sshd for {address}:{port} sent no SSH banner within {START_TIMEOUT:g}s (log: {log})")


def _pid_in(pidfile: Path, pid: int) -> bool:
    try:
        return pidfile.read_text().strip() == str(pid)
    except OSError:
        return False


def _session_processes(address: str, port: int) -> list[int]:
    """Pids of commands started through this sshd that outlived their connection (an
    SSH client closing a channel does not kill the remote command; it is reparented to
    init). They are recognised by SSH_CONNECTION ending in this host's address and port."""
    suffix = f" {address} {port}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if int(entry) == os.getpid():
            continue
        if any(v.startswith(b"SSH_CONNECTION=") and v.endswith(suffix) for v in environ):
            found.append(int(entry))
    return found


def _descendants(pid: int) -> list[int]:
    """Pids of all processes below ``pid`` (its sshd sessions and their commands)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
