"""A fleet whose hosts run a real API service: real sshd hosts, each with a real HTTP process
serving /healthz on the host's own loopback address, and a stand-in ``systemctl`` that really
stops that process and starts a new one.

- **The service.** ``service.py`` below, one process per host (``setsid``: it outlives the SSH
  session that started it, as a systemd unit does). GET /healthz answers 200 with the serving
  process's PID in the body, or the code written in the host's ``health-status`` file (503).
- **The stand-in systemctl.** ``service.restart_command`` points at ``systemctl.sh restart --
  {unit}``. It finds its host's directory from the server address in ``$SSH_CONNECTION`` (all
  test hosts share this machine), refuses a unit the host does not have (as systemctl does),
  logs the call, stops the running process (TERM, then KILL) and starts a new one. Flags in the
  host's directory make faults: ``fail-restart`` (exit 1), ``break-on-restart`` (the new process
  answers 503 until the test clears ``health-status``), ``hold-restart`` (a fifo: the restart
  blocks on it until ``release_restart``).
- **Ports.** Each service listens on a port reserved with the shared test port allocator on its
  host's own address, so no other test process takes it while the service is restarting.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aep_ops.testing.ports import candidate_ports, claim
from tests.support.processes import release_fifo

UNIT = "aep-api"

SERVICE = r'''
import http.server, os, sys
from pathlib import Path

address, port, home = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = home / "health-status"
        code = int(status.read_text().strip() or 200) if status.exists() else 200
        if self.path != "/healthz":
            code = 404
        body = f"{os.getpid()}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer.allow_reuse_address = True
server = http.server.ThreadingHTTPServer((address, port), Handler)
server.daemon_threads = True
server.serve_forever(poll_interval=0.05)
'''

SYSTEMCTL = """#!/bin/sh
# Stand-in for `systemctl restart -- UNIT` on a test host (see tests/support/service_fleet.py).
addr=$(printf '%s' "$SSH_CONNECTION" | awk '{print $3}')
dir="@BASE@/$addr"
[ -d "$dir" ] || { echo "stand-in: no host directory for $addr" >&2; exit 2; }
echo "$*" >> "$dir/calls"
[ "$1" = restart ] && [ "$2" = -- ] && [ $# -eq 3 ] ||
  { echo "stand-in: expected restart -- UNIT, got: $*" >&2; exit 2; }
[ "$3" = "$(cat "$dir/unit")" ] || { echo "Failed to restart $3: Unit $3 not found." >&2; exit 5; }
if [ -p "$dir/hold-restart" ]; then  # the test holds the restart here until it releases the fifo
  echo $$ > "$dir/restart-held"; read -r _ < "$dir/hold-restart"; rm -f "$dir/hold-restart" "$dir/restart-held"
fi
if [ -e "$dir/fail-restart" ]; then
  echo "Job for $3 failed because the control process exited with error code." >&2; exit 1
fi
pid=$(cat "$dir/service.pid" 2>/dev/null)
alive() { # running, not a zombie, and still our service (a PID can be reused)
  [ -n "$1" ] && grep -q "@BASE@/service.py" "/proc/$1/cmdline" 2>/dev/null &&
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
if alive "$pid"; then
  kill -TERM "$pid"; i=0
  while alive "$pid"; do
    i=$((i + 1)); [ $i -eq 100 ] && kill -KILL "$pid"; [ $i -gt 200 ] && { echo "$pid does not die" >&2; exit 1; }
    sleep 0.05
  done
fi
[ -e "$dir/break-on-restart" ] && echo 503 > "$dir/health-status"
setsid "@PYTHON@" "@BASE@/service.py" "$addr" "$(cat "$dir/port")" "$dir" < /dev/null >> "$dir/service.log" 2>&1 &
echo $! > "$dir/service.pid"
echo $! >> "$dir/starts"
"""


def free_service_port(address: str) -> int:
    """A port on ``address`` reserved for this process by the shared test allocator."""
    for port in candidate_ports():
        if claim("service", port, address):
            return port
    raise RuntimeError(f"no free port on {address} for a test service")


def get(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    """(status, body) of one GET; (None, why) when nothing answers."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        return response.status, response.read().decode().strip()
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, cut off mid-answer
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


@dataclass
class ServiceHost:
    name: str
    ssh: Any  # aep_ops.testing.sshd.SshTestHost
    dir: Path
    port: int
    role: str = "api"
    instance_id: str | None = None

    @property
    def address(self) -> str:
        return self.ssh.address

    @property
    def health_url(self) -> str:
        return f"http://{self.address}:{self.port}/healthz"

    def pid(self) -> int | None:
        """PID of the process serving /healthz now (from its own answer), None when none answers."""
        status, body = get(self.health_url)
        return int(body) if status is not None and body.isdigit() else None

    def healthy(self) -> bool:
        return get(self.health_url, timeout=1.0)[0] == 200

    def starts(self) -> list[int]:
        """PIDs of every service process the stand-in started, oldest first."""
        path = self.dir / "starts"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def calls(self) -> list[str]:
        path = self.dir / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def flag(self, name: str, on: bool = True) -> None:
        (self.dir / name).touch() if on else (self.dir / name).unlink(missing_ok=True)

    def set_health(self, code: int | None) -> None:
        """The code /healthz answers (None: 200 again)."""
        path = self.dir / "health-status"
        path.write_text(f"{code}\n") if code is not None else path.unlink(missing_ok=True)

    def hold_restart(self) -> None:
        os.mkfifo(self.dir / "hold-restart")

    def restart_held(self) -> bool:
        return (self.dir / "restart-held").exists()

    def release_restart(self) -> bool:
        return release_fifo(self.dir / "hold-restart")


@dataclass
class ServiceFleet:
    ssh_fleet: Any  # ssh_host_factory
    base: Path
    hosts: list[ServiceHost] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "service.py").write_text(SERVICE)
        self.systemctl = self.base / "systemctl.sh"
        self.systemctl.write_text(SYSTEMCTL.replace("@BASE@", str(self.base)).replace("@PYTHON@", sys.executable))
        self.systemctl.chmod(0o755)

    def add(self, count: int, *, role: str = "api") -> list[ServiceHost]:
        """``count`` hosts of ``role``, each with its service started and answering."""
        for _ in range(count):
            ssh = self.ssh_fleet()
            host_dir = self.base / ssh.address
            host_dir.mkdir()
            (host_dir / "unit").write_text(UNIT)
            port = free_service_port(ssh.address)
            (host_dir / "port").write_text(str(port))
            host = ServiceHost(f"h{len(self.hosts) + 1:02d}", ssh, host_dir, port, role)
            self.hosts.append(host)
            self.restart_directly(host)
        return self.hosts[-count:]

    def restart_directly(self, host: ServiceHost) -> None:
        """Run the stand-in as the host would (the first start), and wait until it answers."""
        env = {**os.environ, "SSH_CONNECTION": f"127.0.0.1 40000 {host.address} {host.ssh.port}"}
        subprocess.run([str(self.systemctl), "restart", "--", UNIT], env=env, check=True, timeout=30)
        (host.dir / "calls").unlink(missing_ok=True)  # the tests count the runbook's calls only
        deadline = time.monotonic() + 15
        while host.pid() != host.starts()[-1]:
            if time.monotonic() > deadline:
                log = (host.dir / "service.log").read_text()
                raise RuntimeError(f"the service of {host.name} did not start: {log}")
            time.sleep(0.02)

    def by_name(self, name: str) -> ServiceHost:
        return next(h for h in self.hosts if h.name == name)

    def stop_service(self, host: ServiceHost) -> None:
        """Kill the host's service process, as a crash that leaves its unit failed does."""
        pid = host.starts()[-1]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while host.pid() is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service of {host.name} (pid {pid}) still answers after SIGKILL")
            time.sleep(0.02)

    def pids(self) -> dict[str, int | None]:
        return {h.name: h.pid() for h in self.hosts}

    def inventory(self) -> str:
        """The hosts: lines of an environment (YAML, indented for ``environments.ENV``)."""
        return "".join(
            f"      - {{name: {h.name}, address: '{h.address}', port: {h.ssh.port}, role: {h.role},"
            f" health_url: '{h.health_url}'" + (f", instance_id: {h.instance_id}" if h.instance_id else "") + "}\n"
            for h in self.hosts)

    def close(self) -> None:
        for host in self.hosts:
            host.release_restart()
            for pid in host.starts():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


class DownProbe:
    """Polls every host's /healthz until stopped; ``most_down`` is the largest number of hosts
    seen not answering 200 in one round (a round reads the hosts one after the other)."""

    def __init__(self, hosts: list[ServiceHost], interval: float = 0.02) -> None:
        self.hosts, self.interval = hosts, interval
        self.most_down, self.rounds, self.seen_down = 0, 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            down = {h.name for h in self.hosts if not h.healthy()}
            self.most_down = max(self.most_down, len(down))
            self.seen_down |= down
            self.rounds += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> DownProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
