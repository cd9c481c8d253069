"""A bad local SSH file is the operator's configuration, not a fleet that is down: through the real
CLI, against real sshd hosts, an identity that is missing, a directory, not a private key or
passphrase-protected, and a known_hosts path that is a directory, are exit 2 with one line naming
the path, where it came from and what is wrong, before any host is contacted; for the flags and
for the configured defaults (environments.ENV.ssh), in fleet.run, fleet.facts, fleet.trust and
patch.rolling."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.fleet_hosts import configured_fleet, write_fleet_config
from tests.support.fleet_hosts import one_error_line as fleet_one_error_line

PASSPHRASE = "s3cret-phrase"


@pytest.fixture
def fleet(ssh_host_factory, tmp_path, monkeypatch):
    """Two hosts, web1 and web2, in environment `fleet`."""
    return configured_fleet(2, ssh_host_factory, tmp_path, monkeypatch)


@pytest.fixture
def bad(tmp_path):
    """Paths that are no usable identity, and what the one line must say about each."""
    keys = tmp_path / "bad-keys"
    keys.mkdir()
    (keys / "garbage").write_text("not a key\n")
    (keys / "a-directory").mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(keys / "locked")], check=True)
    return {
        keys / "missing": "does not exist",
        keys / "a-directory": "is a directory, not a private key file",
        keys / "garbage": "is not a private key aep-ops can load",
        keys / "locked": "is passphrase-protected",
        keys / "locked.pub": "is a public key",
    }


@pytest.fixture
def marker(tmp_path):
    where = tmp_path / "ran-on"
    where.mkdir()
    return f'touch {where}/"$(echo $SSH_CONNECTION | cut -d" " -f3)"', where


def one_error_line(proc) -> str:
    return fleet_one_error_line(proc, PASSPHRASE)


def connecting_tasks(command: str, *flags: str) -> list[tuple[str, ...]]:
    return [("fleet.run", "--env", "fleet", *flags, "--", command),
            ("fleet.facts", "--env", "fleet", *flags),
            ("patch.rolling", "--env", "fleet", *flags, "--dry-run"),
            ("patch.rolling", "--env", "fleet", *flags, "--yes")]


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
def test_a_bad_identity_flag_is_exit_2_before_any_connection(cli, fleet, bad, marker, tool, state_dir):
    command, ran_on = marker
    for path, problem in bad.items():
        for args in connecting_tasks(command, "--identity", str(path)):
            proc = cli(*args, tool=tool)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert one_error_line(proc).startswith(f"error: SSH identity {path} (--identity) {problem}"), args
            assert "unreachable" not in proc.stdout
    assert list(ran_on.iterdir()) == [], "a host was contacted"
    assert not (state_dir / "patching").exists(), "patch.rolling left no rollout state behind"


def test_a_bad_configured_identity_names_the_configuration_key(cli, fleet, bad, marker, ssh_host_factory, tmp_path,
                                                               monkeypatch):
    command, ran_on = marker
    for path, problem in bad.items():
        write_fleet_config(tmp_path, monkeypatch, fleet, path, ssh_host_factory.known_hosts)
        for args in connecting_tasks(command):
            proc = cli(*args)
            assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
            assert one_error_line(proc).startswith(
                f"error: SSH identity {path} (environments.fleet.ssh.identity) {problem}"), args
    assert list(ran_on.iterdir()) == []


def test_a_known_hosts_directory_is_named_as_a_directory(cli, fleet, marker, ssh_host_factory, tmp_path, monkeypatch):
    command, ran_on = marker
    directory = tmp_path / "ssh-dir"
    directory.mkdir()
    expected = f"error: known_hosts file {directory} (--known-hosts) is a directory, not a known_hosts file"
    for args in [*connecting_tasks(command, "--known-hosts", str(directory)),
                 ("fleet.trust", "web1", "--env", "fleet", "--known-hosts", str(directory), "--yes")]:
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert one_error_line(proc).startswith(expected), args
    write_fleet_config(tmp_path, monkeypatch, fleet, ssh_host_factory.identity, directory)
    for args in connecting_tasks(command):
        proc = cli(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert one_error_line(proc).startswith(
            f"error: known_hosts file {directory} (environments.fleet.ssh.known_hosts) is a directory"), args
    assert list(ran_on.iterdir()) == [] and list(directory.iterdir()) == []


def test_a_good_identity_and_known_hosts_still_connect(cli, fleet, marker, ssh_host_factory):
    """The control: the same tasks with usable files reach every host."""
    command, ran_on = marker
    cli("fleet.run", "--env", "fleet", "--identity", str(ssh_host_factory.identity), "--known-hosts",
        str(ssh_host_factory.known_hosts), "--", command, check_rc=0)
    assert sorted(p.name for p in ran_on.iterdir()) == sorted(h.address for h in fleet)
