"""A fleet for incident.diagnose tests: real sshd hosts listed in environment ``inc``, plus the
hosts that hang it in the two ways the field knows: one that accepts TCP and never sends its SSH
banner (``fleet_hosts.HeldHost``), one that authenticates and then never runs the command
(``StalledHost``: sshd's ForceCommand blocks on a fifo until the test releases it). A real HTTP
health endpoint answers 200 or 503 as the test says."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aep_ops.testing.sshd import SshTestHost, known_hosts_line
from tests.conftest import write_config
from tests.support.fleet_hosts import HeldCommand, HeldHost


class StalledHost(SshTestHost):
    """An sshd whose every session runs ``held.shell`` instead of the command: authentication
    succeeds, then nothing comes back until the test releases the fifo."""

    def __init__(self, directory: Path, client_key: Path, held: HeldCommand) -> None:
        self.held = held
        super().__init__(directory, client_key)

    def _config(self) -> str:
        return super()._config().rstrip("\n") + f"\nForceCommand {self.held.shell}\n"


def add_stalled(fleet: Any, directory: Path) -> tuple[StalledHost, HeldCommand]:
    held = HeldCommand(directory / "held")
    host = StalledHost(directory / "stalled", fleet.identity, held)
    fleet.hosts.append(host)  # stopped with the fleet
    host.start()
    with open(fleet.known_hosts, "a") as f:
        f.write(host.known_hosts_line() + "\n")
    return host, held


def add_silent(fleet: Any, upstream: Any) -> HeldHost:
    """A listener that accepts and never sends a banner, known by the upstream sshd's key."""
    silent = HeldHost(upstream.address, upstream.port)
    with open(fleet.known_hosts, "a") as f:
        f.write(known_hosts_line(silent.address, silent.port, upstream.host_public_key) + "\n")
    return silent


class Health:
    """A real health endpoint: GET /healthz answers ``status`` (200 until the test changes it)."""

    def __init__(self) -> None:
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = b"ok" if outer.status == 200 else b"unhealthy"
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/healthz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="health")
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_incident_config(tmp_path: Path, monkeypatch: Any, fleet: Any, hosts: list[tuple[str, Any, str | None]],
                          *, incident: str = "", role: str = "api") -> Path:
    """Environment ``inc``: ``hosts`` as (name, host-with-address-and-port, health URL or None)."""
    entries = "\n".join(
        f"      - {{name: {name}, address: {h.address}, port: {h.port}, role: {role}"
        + (f", health_url: '{url}'" if url else "") + "}" for name, h, url in hosts)
    text = f"""
environments:
  inc:
    production: false
    backend: local
    ssh: {{user: {fleet.hosts[0].user}, identity: "{fleet.identity}", known_hosts: "{fleet.known_hosts}",
          connect_timeout: 30}}
    hosts:
{entries}
""" + (f"    incident:\n{incident}\n" if incident else "")
    return write_config(tmp_path / "incident.yaml", text, monkeypatch)
