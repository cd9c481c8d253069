"""A configured test fleet for the fleet.* tests: real sshd hosts (aep_ops.testing.sshd), each on
its own loopback address, listed in two environments, ``fleet`` (not production) and
``fleetprod`` (production), as web1, web2... (web1-web3 role api, the others worker)."""

from __future__ import annotations

import json
from pathlib import Path

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
