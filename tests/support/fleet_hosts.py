"""A configured test fleet for the fleet.* tests: real sshd hosts (aep_ops.testing.sshd), each on
its own loopback address, listed in two environments, ``fleet`` (not production) and
``fleetprod`` (production), as web1, web2... (web1-web3 role api, the others worker).

Also hung hosts that the test holds and releases (``HeldHost``: no SSH handshake; ``HeldCommand``:
a command that blocks), and ``call_while_held``: a deadline is proven by ordering, not by a
stopwatch. The call must return while the host is still held; had it waited for the host, it
could only have answered after the release, which comes after a watchdog, and the test fails
saying so. The watchdog's length never decides whether a correct run passes.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import pytest

from aep_ops.base import processes
from tests.conftest import write_config

ENV_TEMPLATE = """
  {name}:
    production: {production}
    backend: local
    ssh: {{user: {user}, identity: "{identity}", known_hosts: "{known}", connect_timeout: 5}}
    inventory: {{parallel: 5}}
    hosts:
{hosts}
"""


def configured_fleet(count: int, ssh_host_factory, tmp_path: Path, monkeypatch) -> list:
    """``count`` started hosts, listed in a configuration file that AEP_OPS_CONFIG points at."""
    hosts = [ssh_host_factory() for _ in range(count)]
    write_fleet_config(tmp_path, monkeypatch, hosts, ssh_host_factory.identity, ssh_host_factory.known_hosts)
    return hosts


def write_fleet_config(tmp_path: Path, monkeypatch, hosts, identity, known) -> Path:
    entries = "\n".join(f"      - {{name: web{i + 1}, address: {h.address}, port: {h.port}, "
                        f"role: {'api' if i < 3 else 'worker'}}}" for i, h in enumerate(hosts))
    text = "environments:" + "".join(
        ENV_TEMPLATE.format(name=name, production=prod, user=hosts[0].user, identity=identity, known=known,
                            hosts=entries)
        for name, prod in (("fleet", "false"), ("fleetprod", "true")))
    return write_config(tmp_path / "fleet.yaml", text, monkeypatch)


def run_json(cli, *args, rc=None):
    """``fleet.run --json ARGS``: the process and its parsed output (``rc``: the exit code expected)."""
    proc = cli("fleet.run", "--json", *args)
    if rc is not None:
        assert proc.returncode == rc, (proc.returncode, proc.stdout, proc.stderr)
    return proc, json.loads(proc.stdout)


def one_error_line(proc, *never: str) -> str:
    """The one line a user mistake gives on stderr (JSON log lines aside); none of ``never`` anywhere."""
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    for text in never:
        assert text not in proc.stderr + proc.stdout
    return lines[0]


# -- hung hosts the test holds ----------------------------------------------------------------

WATCHDOG = 60.0  # only for a broken deadline: how long a failing test waits before it says so


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` until it is true; fail saying ``what`` did not happen in ``timeout`` s."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.02)


def call_while_held(call: Callable[[], Any], release: Callable[[], Any], *, what: str,
                    watchdog: float = WATCHDOG) -> Any:
    """``call()`` in a thread while the test holds a hung host: its value (or its exception,
    raised here) once it returns, the host still held. If it has not returned after ``watchdog``
    seconds it is waiting for the host: release the host and fail, saying ``what`` did not happen."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="call-while-held")
    thread.start()
    thread.join(watchdog)
    if thread.is_alive():
        release()
        thread.join(watchdog)
        pytest.fail(f"{what} did not happen while the hung host was held ({watchdog:g}s): it waited for the host"
                    f" and answered only after the release ({repr(box.get('error', box.get('value')))[:300]})")
    if "error" in box:
        raise box["error"]
    return box.get("value")


class HeldCommand:
    """A shell command (``.shell``) that writes its pid, then blocks on a fifo until ``release()``,
    then touches ``done``: whether it is still running, or ever finished, is observable."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.fifo, self.pidfile, self.done = directory / "hold", directory / "held.pid", directory / "finished"
        os.mkfifo(self.fifo)
        self.shell = f"echo $$ > {self.pidfile}; read -r _ < {self.fifo}; touch {self.done}"

    @property
    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        """The command has started and is still blocked on the fifo (alive, not a zombie)."""
        pid = self.pid
        return pid is not None and processes.alive(pid)

    def release(self) -> bool:
        """Let it finish; False when nothing is waiting on the fifo (it ended, or never started)."""
        try:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # ENXIO: no reader
            return False
        try:
            os.write(fd, b"go\n")
        finally:
            os.close(fd)
        return True


class HeldHost:
    """A TCP listener in front of a real sshd: it accepts connections and says nothing (a host
    hung before its SSH banner) until ``release()``, then forwards them both ways, so a client
    still waiting gets a working SSH session. ``connections`` counts the clients it held."""

    def __init__(self, upstream_address: str, upstream_port: int) -> None:
        self.upstream = (upstream_address, upstream_port)
        self.sock = socket.socket()
        self.sock.bind((upstream_address, 0))
        self.sock.listen(16)
        self.address, self.port = self.sock.getsockname()
        self.connections = 0
        self._released, self._closed = threading.Event(), False
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True, name="held-host").start()

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self._closed = True
        self._released.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        self.sock.close()
        for conn in list(self._open):
            conn.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        self._released.wait()
        if self._closed:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        self._open.append(upstream)
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes until EOF or an error, then pass the EOF on."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    try:
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass
