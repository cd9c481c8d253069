"""Run commands on a remote host over SSH, with the host key verified.

paramiko is used directly (not fabric's Connection, which hard-codes AutoAddPolicy and
would accept any host key): only keys already in ``known_hosts`` are accepted, only the
given identity is offered (no agent, no ~/.ssh guessing). paramiko is imported inside
methods so that importing this module stays cheap for the CLI.

Remote commands: argv is quoted with ``shlex.join`` for the remote login shell, so every
argument arrives literally. ``env=`` is applied with ``env K=V ...`` on the remote command
line (sshd drops most client-sent variables), so values are visible in the remote process
list: pass secrets through ``input=``, never ``env=``. ``user=`` runs the command as another
remote user via ``sudo -n -u USER --``; it needs passwordless sudo for the login user and
fails fast (``sudo -n``) instead of waiting for a password.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import select
import shlex
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from aep_ops.base.errors import CommandTimeout, ExecutionError, HostKeyError, HostUnreachable
from aep_ops.executors.base import CommandResult
from aep_ops.executors.sshfiles import UnusableIdentity, known_hosts_entries, load_identity

if TYPE_CHECKING:  # pragma: no cover
    import paramiko

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CHUNK = 65536


class SshExecutor:
    """Executor for one SSH host. The connection opens on first use and is reused."""

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        user: str,
        identity: str | os.PathLike[str],
        known_hosts: str | os.PathLike[str],
        connect_timeout: float = 10,
        command_timeout: float | None = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.user = user
        self.identity = os.fspath(identity)
        self.known_hosts = os.fspath(known_hosts)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.target = f"{user}@{host}:{self.port}"
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()  # guards _client and _generation
        self._connect_lock = threading.Lock()
        self._generation = 0
        self._connecting: socket.socket | None = None  # the socket of a connect in progress (close() aborts it)

    def __repr__(self) -> str:
        return f"SshExecutor({self.target!r})"

    def __enter__(self) -> SshExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Executor protocol -------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
    ) -> CommandResult:
        """Run argv remotely. The deadline (``timeout`` or ``command_timeout``) counts from
        the moment the command is sent; connecting has its own ``connect_timeout``."""
        argv = tuple(str(a) for a in argv)
        if not argv:
            raise ExecutionError(f"{self.target}: empty command")
        command = remote_command(argv, env=env, user=None if user == self.user else user)
        return self._execute(command, argv, timeout, input)

    def run_shell(self, command: str, *, timeout: float | None = None, input: str | None = None) -> CommandResult:
        """Run a shell command line exactly as a person typed it (``fleet.run -- CMD``), like
        ``ssh host CMD``: the remote login shell parses it; nothing is quoted. Never build
        ``command`` from data: use run(argv) for that. The result's argv is ``(command,)``."""
        if not command.strip():
            raise ExecutionError(f"{self.target}: empty command")
        return self._execute(command, (command,), timeout, input)

    def _execute(self, command: str, argv: tuple[str, ...], timeout: float | None,
                 input: str | None) -> CommandResult:
        import paramiko

        timeout = self.command_timeout if timeout is None else timeout
        chan = self._open_channel()
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        try:
            chan.exec_command(command)
            stdout, stderr, status = self._communicate(chan, input, deadline)
        except (paramiko.SSHException, OSError, EOFError) as exc:  # the connection died under us
            self.close()
            raise HostUnreachable(f"{self.target}: connection lost while running `{argv[0]}`: {exc}") from exc
        finally:
            chan.close()
        if status is None:
            raise CommandTimeout(self._timeout_message(argv, timeout))
        return CommandResult(
            target=self.target,
            argv=argv,
            exit_status=status,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            duration=time.monotonic() - started,
        )

    def open_sftp(self) -> Any:
        """An SFTP session on this host's connection, for bytes too many for a command's stdout
        (logs.ship reads rotated files with it). Close it after use."""
        return self._connected().open_sftp()

    def close(self) -> None:
        """Close the connection; the next run() opens a new one. Never waits for a connect
        in progress in another thread (a fan-out may leave one behind at its deadline): its
        socket is shut down, so a host that accepted TCP and never sent its SSH banner frees
        that thread now, not when paramiko's banner wait ends."""
        with self._lock:
            client, self._client = self._client, None
            connecting, self._connecting = self._connecting, None
            self._generation += 1
        if connecting is not None:
            with contextlib.suppress(OSError):
                connecting.shutdown(socket.SHUT_RDWR)
        if client is not None:
            client.close()

    # -- connection --------------------------------------------------------------------

    def _open_channel(self) -> paramiko.Channel:
        """A session channel on a live connection; reconnects once if the old one died."""
        import paramiko

        for attempt in (1, 2):
            client = self._connected()
            try:
                transport = client.get_transport()
                if transport is None or not transport.is_active():
                    raise EOFError("transport closed")
                return transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.close()
                if attempt == 2:
                    raise HostUnreachable(f"{self.target}: could not open an SSH session: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _connected(self) -> paramiko.SSHClient:
        with self._connect_lock:  # one connect at a time; close() does not take this lock
            with self._lock:
                client, generation = self._client, self._generation
            if client is not None:
                transport = client.get_transport()
                if transport is not None and transport.is_active():
                    return client
                self.close()
                generation += 1
            client = self._connect()
            with self._lock:
                if self._generation == generation:
                    self._client = client
                    return client
            client.close()  # close() was called while we were connecting
            raise HostUnreachable(f"{self.target}: connection closed while it was being opened")

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        pkey = _identity(self.identity, self.target)
        client = paramiko.SSHClient()
        try:
            _install_host_keys(client, self.known_hosts, self.host, self.port)
        except OSError as exc:
            raise HostKeyError(
                f"{self.target}: cannot read known_hosts file {self.known_hosts} ({exc.strerror}); "
                "host keys cannot be verified, so aep-ops will not connect"
            ) from exc
        client.set_missing_host_key_policy(_reject_unknown(self))
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            with self._lock:
                self._connecting = sock
            client.connect(
                self.host,
                port=self.port,
                sock=sock,
                username=self.user,
                pkey=pkey,
                look_for_keys=False,
                allow_agent=False,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(self._changed_key_message(exc.key, exc.expected_key)) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise ExecutionError(
                f"{self.target}: SSH authentication as {self.user} with key {self.identity} failed "
                f"({exc}); check that its public key is in the remote authorized_keys"
            ) from exc
        except paramiko.SSHException as exc:
            client.close()
            # paramiko's handshake deadline surfaces as "No existing session" (start_client
            # returns quietly on timeout) or as a banner error.
            if any(s in str(exc) for s in ("banner", "No existing session", "Negotiation")):
                raise HostUnreachable(
                    f"{self.target}: no SSH handshake within {self.connect_timeout:g}s ({exc})"
                ) from exc
            raise ExecutionError(f"{self.target}: SSH handshake failed: {exc}") from exc
        except (socket.timeout, TimeoutError) as exc:
            client.close()
            raise HostUnreachable(f"{self.target}: no answer within {self.connect_timeout:g}s") from exc
        except socket.gaierror as exc:
            client.close()
            raise HostUnreachable(f"{self.target}: cannot resolve host {self.host!r}: {exc.strerror}") from exc
        except (OSError, EOFError) as exc:
            client.close()
            raise HostUnreachable(f"{self.target}: cannot connect: {_describe_os_error(exc)}") from exc
        finally:
            with self._lock:
                self._connecting = None
        return client

    # -- command I/O -------------------------------------------------------------------

    def _communicate(
        self, chan: paramiko.Channel, input: str | None, deadline: float | None
    ) -> tuple[bytes, bytes, int | None]:
        """Feed input, collect output until EOF and exit status. status None = deadline hit."""
        if input:
            chan.settimeout(_remaining(deadline))
            try:
                chan.sendall(input.encode("utf-8"))
            except socket.timeout:
                return b"", b"", None
            chan.settimeout(None)
        chan.shutdown_write()  # commands reading stdin see EOF instead of hanging
        out: list[bytes] = []
        err: list[bytes] = []
        while True:
            finished = chan.eof_received or chan.closed
            while chan.recv_ready():
                out.append(chan.recv(_CHUNK))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(_CHUNK))
            if finished:
                break
            remaining = _remaining(deadline)
            if remaining == 0:
                return b"".join(out), b"".join(err), None
            # The channel's fileno becomes readable on stdout/stderr data, EOF and close.
            select.select([chan], [], [], min(remaining or 1.0, 1.0))
        if not chan.status_event.wait(_remaining(deadline)):
            return b"".join(out), b"".join(err), None
        return b"".join(out), b"".join(err), chan.recv_exit_status()

    # -- messages ----------------------------------------------------------------------

    def _timeout_message(self, argv: tuple[str, ...], timeout: float | None) -> str:
        return (
            f"{self.target}: `{argv[0]}` did not finish within {timeout:g}s; its SSH channel was closed "
            "but the remote process may still be running"
        )

    def _unknown_key_message(self, key: Any) -> str:
        kind = _keyscan_type(key.get_name())
        return (
            f"{self.host}:{self.port}: unknown SSH host key {key.get_name()} {fingerprint(key.asbytes())} "
            f"(not in {self.known_hosts}); refusing to connect. Verify the fingerprint out of band "
            f"(on the host: `ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub`), then add it to "
            f"{self.known_hosts}, e.g. `ssh-keyscan -p {self.port} -t {kind} -- {shlex.quote(self.host)} >> "
            f"{shlex.quote(self.known_hosts)}`"
        )

    def _changed_key_message(self, got: Any, expected: Any) -> str:
        entry = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return (
            f"{self.host}:{self.port}: SSH HOST KEY CHANGED: the host offered {got.get_name()} "
            f"{fingerprint(got.asbytes())} but {self.known_hosts} has {expected.get_name()} "
            f"{fingerprint(expected.asbytes())}. Someone may be intercepting the connection "
            "(man-in-the-middle), or the host was rebuilt. Do not proceed: confirm the new key out "
            f"of band, and only then replace the entry (`ssh-keygen -R {shlex.quote(entry)} -f "
            f"{shlex.quote(self.known_hosts)}`)"
        )


def remote_command(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, user: str | None = None
) -> str:
    """The command line sent to the remote shell, every argument quoted."""
    argv = list(argv)
    if env:
        bad = [k for k in env if not _ENV_NAME.match(k)]
        if bad:
            raise ExecutionError(f"invalid environment variable name(s): {', '.join(map(repr, bad))}")
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    if user is not None:
        argv = ["sudo", "-n", "-u", user, "--", *argv]
    return shlex.join(argv)


def fingerprint(key_blob: bytes) -> str:
    """OpenSSH-style SHA256 fingerprint of a public key blob (``ssh-keygen -l``)."""
    digest = hashlib.sha256(key_blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _reject_unknown(executor: SshExecutor) -> paramiko.MissingHostKeyPolicy:
    """RejectPolicy whose error names the host and the offered fingerprint."""
    import paramiko

    class _Reject(paramiko.RejectPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            raise HostKeyError(executor._unknown_key_message(key))

    return _Reject()


def _identity(path: str, target: str) -> Any:
    try:
        return load_identity(path)
    except UnusableIdentity as exc:
        raise ExecutionError(f"{target}: {exc}") from None


def _install_host_keys(client: paramiko.SSHClient, path: str, host: str, port: int) -> None:
    """Give ``client`` the known_hosts entries for ``host:port`` only (plain or hashed names),
    which is what paramiko would match. Raises OSError when the file cannot be read."""
    import paramiko

    name = host if port == 22 else f"[{host}]:{port}"
    plain, hashed = known_hosts_entries(path)
    matches = list(plain.get(name, ()))
    for entry in hashed:
        if any(h.startswith("|1|") and paramiko.HostKeys.hash_host(name, h) == h for h in entry.hostnames):
            matches.append(entry)
    keys, seen = client.get_host_keys(), set()
    for entry in matches:  # first entry of each key type wins, as in paramiko's lookup
        if entry.key.get_name() not in seen:
            seen.add(entry.key.get_name())
            keys.add(name, entry.key.get_name(), entry.key)


def _keyscan_type(key_name: str) -> str:
    if "ed25519" in key_name:
        return "ed25519"
    if key_name.startswith("ecdsa"):
        return "ecdsa"
    return "rsa"


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _describe_os_error(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)  # paramiko NoValidConnectionsError
    if errors:
        exc = next(iter(errors.values()))
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
