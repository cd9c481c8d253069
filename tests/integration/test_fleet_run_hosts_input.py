"""Which hosts a fleet command acts on, through the real CLI (`inv` and `aep-ops`) against real sshd
hosts: a --hosts or --role given but blank is exit 2 with one line (never "the whole inventory"),
and nothing beginning with "-" reaches ssh-keyscan or ssh as an option (--host, --hosts, inventory).
The parser itself: tests/unit/test_fleet_hosts_input.py."""

from __future__ import annotations

import os

import pytest

from tests.conftest import write_config
from tests.support.fleet_hosts import configured_fleet, one_error_line

EMPTY_HOSTS = "error: --hosts is empty: name at least one host, or leave the flag out to use the inventory"
EMPTY_ROLE = "error: --role is empty: name a role, or leave the flag out to use every host"


@pytest.fixture
def fleet(ssh_host_factory, tmp_path, monkeypatch):
    """Two hosts, web1 and web2, in environment `fleet`."""
    return configured_fleet(2, ssh_host_factory, tmp_path, monkeypatch)


@pytest.fixture
def marker(tmp_path):
    """A command that leaves one file per host it ran on, and the directory to look in."""
    where = tmp_path / "ran-on"
    where.mkdir()
    return f'touch {where}/"$(echo $SSH_CONNECTION | cut -d" " -f3)"', where


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
@pytest.mark.parametrize("value", ["", ",", " , "])
def test_blank_hosts_is_exit_2_and_runs_nowhere(cli, fleet, marker, tool, value):
    command, ran_on = marker
    for args in (("fleet.run", "--env", "fleet", "--hosts", value, "--", command),
                 ("fleet.facts", "--env", "fleet", "--hosts", value),
                 ("patch.rolling", "--env", "fleet", "--hosts", value, "--dry-run"),
                 ("patch.rolling", "--env", "fleet", "--hosts", value, "--yes")):
        proc = cli(*args, tool=tool)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert one_error_line(proc) == EMPTY_HOSTS, args
    assert list(ran_on.iterdir()) == []
    cli("fleet.run", "--env", "fleet", "--", command, tool=tool, check_rc=0)  # absent: the whole inventory
    assert sorted(p.name for p in ran_on.iterdir()) == sorted(h.address for h in fleet)


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
@pytest.mark.parametrize("value", ["", " "])
def test_blank_role_is_exit_2_and_runs_nowhere(cli, fleet, marker, tool, value):
    command, ran_on = marker
    for args in (("fleet.run", "--env", "fleet", "--role", value, "--", command),
                 ("fleet.facts", "--env", "fleet", "--role", value),
                 ("patch.rolling", "--env", "fleet", "--role", value, "--dry-run")):
        proc = cli(*args, tool=tool)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert one_error_line(proc) == EMPTY_ROLE, args
    assert list(ran_on.iterdir()) == []


@pytest.fixture
def keyscan_log(tmp_path):
    """PATH with an ssh-keyscan that only records its arguments: proves whether it was started."""
    shims, log = tmp_path / "shims", tmp_path / "keyscan.log"
    shims.mkdir()
    (shims / "ssh-keyscan").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {log}\nexit 1\n')
    (shims / "ssh-keyscan").chmod(0o755)
    return {"PATH": f"{shims}:{os.environ['PATH']}"}, log


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
@pytest.mark.parametrize("args", [["--host=-fFILE"], ["--host", "-oProxyCommand=id"], ["--host", "-@10.0.0.1"],
                                  ["--host", "admin@-p2222"]])
def test_trust_refuses_a_host_beginning_with_a_dash_before_ssh_keyscan(cli, fleet, tmp_path, keyscan_log, tool,
                                                                        args):
    env, log = keyscan_log
    known = tmp_path / "known_hosts"
    proc = cli("fleet.trust", *args, "--env", "fleet", "--known-hosts", str(known), "--yes", tool=tool, env=env)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    value = args[-1].split("=", 1)[1] if args[-1].startswith("--host=") else args[-1]
    assert one_error_line(proc).startswith(f"error: --host {value!r} begins with '-'")
    assert not log.exists(), "ssh-keyscan was started"
    assert not known.exists()


@pytest.mark.parametrize("spec", ["-oProxyCommand=touch /tmp/aep-pwned", "admin@-oProxyCommand=id", "web1 web2"])
def test_run_refuses_a_bad_hosts_entry_before_connecting(cli, fleet, marker, spec):
    command, ran_on = marker
    proc = cli("fleet.run", "--env", "fleet", f"--hosts=web1,{spec}", "--", command)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert one_error_line(proc).startswith(f"error: --hosts entry {spec!r} ")
    assert list(ran_on.iterdir()) == [], "web1 was contacted although the list was refused"


@pytest.mark.parametrize("entry, message", [
    ("{name: '-fFILE', address: ADDR, port: PORT}", "environments.bad.hosts[0].name '-fFILE' begins with '-'"),
    ("{name: 'web 1', address: ADDR, port: PORT}", "environments.bad.hosts[0].name 'web 1' contains whitespace"),
    ("{name: web1, address: '-oProxyCommand=id', port: PORT}",
     "environments.bad.hosts[0].address '-oProxyCommand=id' begins with '-'"),
    ("{name: web1, address: ADDR, port: PORT, user: '-lroot'}", "environments.bad.hosts[0].user '-lroot' begins"),
])
def test_an_inventory_entry_beginning_with_a_dash_is_a_config_error(cli, fleet, marker, ssh_host_factory, tmp_path,
                                                                    monkeypatch, entry, message):
    command, ran_on = marker
    host = fleet[0]
    write_config(tmp_path / "bad.yaml", f"""
environments:
  bad:
    production: false
    backend: local
    ssh: {{user: {host.user}, identity: "{ssh_host_factory.identity}", known_hosts: "{ssh_host_factory.known_hosts}"}}
    hosts: [{entry.replace("ADDR", host.address).replace("PORT", str(host.port))}]
""", monkeypatch)
    for args in (("fleet.run", "--env", "bad", "--", command), ("fleet.facts", "--env", "bad"),
                 ("patch.rolling", "--env", "bad", "--dry-run")):
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert one_error_line(proc).startswith(f"error: {message}"), args
    assert list(ran_on.iterdir()) == []
