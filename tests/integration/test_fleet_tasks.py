"""fleet.run / fleet.facts through the real CLI, against real sshd hosts (fleet.trust:
test_fleet_trust.py).

Each test host is an sshd on its own loopback address of this machine (aep_ops.testing.sshd),
with strict host-key checking, so "which host ran it" is proven with $SSH_CONNECTION and
facts are this machine's own.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest

import aep_ops.testing.sshd as sshd_module
from aep_ops.testing.sshd import known_hosts_line
from tests.support.fleet_hosts import HeldCommand, HeldHost, call_while_held, configured_fleet, run_json
from tests.support.patch_fleet import offer_updates, private_host_wrapper


@pytest.fixture
def fleet(ssh_host_factory, tmp_path, monkeypatch):
    """Five hosts; environment `fleet` (not production) and `fleetprod` (production) list them."""
    return configured_fleet(5, ssh_host_factory, tmp_path, monkeypatch)


def test_runs_on_every_host_each_on_its_own_sshd(cli, fleet):
    proc, data = run_json(cli, "--env", "fleet", "--", 'echo "$SSH_CONNECTION";', "echo", "two", "words;",
                          'echo "$0"', rc=0)
    assert data["summary"] == {"ok": 5, "failed": 0, "unreachable": 0}
    login_shell = os.path.basename(pwd.getpwnam(fleet[0].user).pw_shell)
    for host, row in zip(fleet, data["hosts"]):
        first, second, third = row["stdout"].splitlines()
        assert first.split()[2:] == [host.address, str(host.port)], "ran on the host it is listed for"
        assert second == "two words", "the words after -- reached the remote shell as typed (as ssh joins them)"
        assert third == login_shell, "the user's login shell parsed it, as with `ssh host CMD`"
    text = cli("fleet.run", "--env", "fleet", "--role", "api", "--", "true", check_rc=0).stdout.splitlines()
    assert [line.split()[:2] for line in text[:-1]] == [["ok", "web1"], ["ok", "web2"], ["ok", "web3"]]
    assert text[-1].startswith("3 host(s): 3 ok, 0 failed, 0 unreachable")


def test_stopped_host_is_listed_unreachable_and_exit_is_1(cli, fleet):
    fleet[3].stop()
    proc = cli("fleet.run", "--env", "fleet", "--", "uptime")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[3].startswith("unreachable web4") and "Connection refused" in lines[3], lines[3]
    assert sum(line.startswith("ok ") for line in lines) == 4
    assert lines[-1].startswith("5 host(s): 4 ok, 0 failed, 1 unreachable")


def test_failing_command_on_one_host_reports_exit_status_and_stderr_tail(cli, fleet):
    bad = fleet[2]
    command = (f'case "$SSH_CONNECTION" in *" {bad.address} {bad.port}") '
               'echo "noise"; echo "disk full on /var" >&2; exit 3;; esac; echo fine')
    proc = cli("fleet.run", "--env", "fleet", "--", command)
    assert proc.returncode == 1
    line = next(x for x in proc.stdout.splitlines() if " web3 " in x)
    assert line.split()[0] == "failed" and line.endswith("exit 3: disk full on /var"), line
    assert "4 ok, 1 failed, 0 unreachable" in proc.stdout


def test_production_needs_yes_and_nothing_runs_without_it(cli, fleet, tmp_path, isolated):
    marker = tmp_path / "ran-on"
    marker.mkdir()
    command = f'touch {marker}/"$(echo $SSH_CONNECTION | cut -d" " -f3)"'

    proc = cli("fleet.run", "--env", "fleetprod", "--", command)

    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert errors == ["error: fleet.run on production environment fleetprod (5 host(s)) needs --yes; nothing was run"]
    assert list(marker.iterdir()) == [], "a host ran the command without approval"
    cli("fleet.run", "--env", "fleetprod", "--yes", "--", command, check_rc=0)
    assert sorted(p.name for p in marker.iterdir()) == sorted(h.address for h in fleet), "the probe itself works"
    audit = [json.loads(line) for line in (isolated / "logs" / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["result"]) for a in audit] == [("fleet.run", "refused: approval required"),
                                                           ("fleet.run", "ok")]
    assert audit[1]["args"]["command"] == command and audit[1]["outcomes"]["web5"] == "ok"


def test_hosts_override_with_inventory_names_and_addresses(cli, fleet, ssh_host_factory):
    spec = f"{fleet[4].user}@{fleet[4].address}:{fleet[4].port}"
    proc, data = run_json(cli, "--env", "fleet", "--hosts", f"web2,{spec}", "--", "echo $SSH_CONNECTION", rc=0)
    assert [h["name"] for h in data["hosts"]] == ["web2", f"{fleet[4].address}:{fleet[4].port}"]
    assert [h["stdout"].split()[2:] for h in data["hosts"]] == [
        [fleet[1].address, str(fleet[1].port)], [fleet[4].address, str(fleet[4].port)]], "each ran where named"
    # An environment with no inventory at all: --hosts, --identity and --known-hosts are enough.
    text = cli("fleet.run", "--env", "local", "--hosts", spec, "--identity", str(ssh_host_factory.identity),
               "--known-hosts", str(ssh_host_factory.known_hosts), "--", "echo $SSH_CONNECTION",
               check_rc=0).stdout.splitlines()
    assert text[0].split()[:2] == ["ok", f"{fleet[4].address}:{fleet[4].port}"], text
    assert text[-1].startswith("1 host(s): 1 ok, 0 failed, 0 unreachable"), text


def test_unknown_or_changed_host_key_is_refused_on_that_host_only(cli, fleet, ssh_host_factory, tmp_path):
    known = tmp_path / "partial_known_hosts"
    lines = [h.known_hosts_line() for h in fleet[:3]]
    impostor = fleet[1].known_hosts_line().split()[1:]  # web5 "has" web2's key: a changed key
    known.write_text("\n".join([*lines, f"[{fleet[4].address}]:{fleet[4].port} {' '.join(impostor)}"]) + "\n")

    proc, data = run_json(cli, "--env", "fleet", "--known-hosts", str(known), "--", "true", rc=1)

    by_name = {h["name"]: h for h in data["hosts"]}
    assert [by_name[f"web{i}"]["status"] for i in range(1, 6)] == ["ok"] * 3 + ["unreachable"] * 2
    assert "unknown SSH host key" in by_name["web4"]["error"]
    assert fleet[3].host_key_fingerprint in by_name["web4"]["error"]
    assert "HOST KEY CHANGED" in by_name["web5"]["error"]


def test_hung_hosts_do_not_hold_the_run(cli, fleet, ssh_host_factory, tmp_path):
    """Two hung hosts, held by the test until fleet.run has exited: web3's command blocks, and a
    listener in front of web4's sshd never finishes the SSH handshake (ssh.connect_timeout 600 s:
    only --timeout can end it). A run that waited for either, in its fan-out or at its exit,
    could only answer after the release: the test then fails saying so."""
    held = HeldCommand(tmp_path / "held")
    silent = HeldHost(fleet[3].address, fleet[3].port)
    known = tmp_path / "known_hosts"
    known.write_text(ssh_host_factory.known_hosts.read_text()
                     + known_hosts_line(silent.address, silent.port, fleet[3].host_public_key) + "\n")
    command = f'case "$SSH_CONNECTION" in *" {fleet[2].address} "*) {held.shell};; esac; echo up'

    def release() -> None:
        held.release()
        silent.release()

    try:
        proc = call_while_held(
            lambda: cli("fleet.run", "--json", "--env", "fleet", "--hosts", f"web1,web2,web3,{silent.address}:"
                        f"{silent.port}", "--known-hosts", str(known), "--timeout", "3", "--", command,
                        env={"AEP_OPS_ENVIRONMENTS__FLEET__SSH__CONNECT_TIMEOUT": "600"}, timeout=300),
            release, what="fleet.run exiting at its 3 s --timeout")
        assert not held.done.exists() and silent.connections == 1
    finally:
        held.release()
        silent.close()
    assert proc.returncode == 1, proc.stderr
    data = json.loads(proc.stdout)
    assert [(h["name"], h["status"]) for h in data["hosts"]] == [
        ("web1", "ok"), ("web2", "ok"), ("web3", "unreachable"), (f"{silent.address}:{silent.port}", "unreachable")]
    assert "no answer within 3s" in data["hosts"][2]["error"]
    assert "within 3s" in data["hosts"][3]["error"], "the handshake had the run's deadline, not 600 s"
    assert data["summary"] == {"ok": 2, "failed": 0, "unreachable": 2}


@pytest.fixture
def apt_hosts(ssh_host_factory, tmp_path, monkeypatch):
    """web1 and web2 with their own /run and apt (tests/support/patch_fleet.py's WRAPPER). web1's
    sources offer newer versions of four installed packages: gzip in bookworm-security, sed in
    bookworm-updates, grep in both (apt lists it as ``grep/bookworm-updates,bookworm-security``),
    tar in a repository without a suite. web2's offer nothing, and web2 needs a reboot. Both
    have refreshed their lists, as a host's apt timer does."""
    monkeypatch.setattr(sshd_module, "SSHD", str(private_host_wrapper(tmp_path / "wrapper")))
    web1, web2 = configured_fleet(2, ssh_host_factory, tmp_path, monkeypatch)
    apt = web1.directory / "apt"
    offer_updates(apt, tmp_path / "updates", ["sed", "grep"], suite="bookworm-updates")
    offer_updates(apt, tmp_path / "security", ["gzip", "grep"], suite="bookworm-security")
    offer_updates(apt, tmp_path / "local", ["tar"])
    (web2.directory / "run" / "reboot-required").touch()
    for host in (web1, web2):
        with host.executor() as ex:
            refreshed = ex.run(["apt-get", "-qq", "update"], timeout=120)
            assert refreshed.ok, refreshed.describe()
    return web1, web2


def test_facts_say_what_each_host_has(cli, apt_hosts):
    proc = cli("fleet.facts", "--env", "fleet", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    web1, web2 = rows["web1"], rows["web2"]
    assert (web1["updates"], web1["security_updates"], sorted(web1["packages"])) == (
        4, 2, ["grep", "gzip", "sed", "tar"]), "2 security updates: gzip, and grep (in both suites)"
    assert (web2["updates"], web2["security_updates"], web2["packages"]) == (0, 0, [])
    assert (web1["reboot_required"], web2["reboot_required"]) == (False, True)
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    for row in rows.values():  # the rest is this machine's
        assert row["status"] == "ok" and row["error"] is None
        assert row["os"] == release["PRETTY_NAME"].strip('"')
        assert (row["os_id"], row["os_version"]) == (release["ID"], release.get("VERSION_ID", "").strip('"'))
        assert row["kernel"] == os.uname().release
        assert 0 < row["uptime_seconds"] <= float(Path("/proc/uptime").read_text().split()[0])
    table = cli("fleet.facts", "--env", "fleet", check_rc=0).stdout.splitlines()
    assert table[0].split() == ["HOST", "OS", "KERNEL", "UPTIME", "UPDATES", "SECURITY", "REBOOT"]
    assert table[1].startswith("web1") and table[1].split()[-3:] == ["4", "2", "no"], table
    assert table[2].startswith("web2") and table[2].split()[-3:] == ["0", "0", "yes"], table
    assert os.uname().release in table[1]


# -- known_hosts handling of the SSH executor (parsed once per file version, per-host index) ----


def test_hashed_and_multi_name_known_hosts_entries_are_honoured(ssh_host_factory, tmp_path):
    hosts = [ssh_host_factory() for _ in range(2)]
    known = tmp_path / "known_hosts"
    first, second = (h.known_hosts_line().split(" ", 1) for h in hosts)
    known.write_text(f"{second[0]} {second[1]}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    hashed = known.read_text()
    assert hashed.startswith("|1|") and hosts[1].address not in hashed
    known.write_text(f"# comment\nnot a valid line\n{first[0]},other.example {first[1]}\n{hashed}")
    for host in hosts:
        with host.executor(known_hosts=known) as ex:
            assert ex.run_shell("echo ok").stdout == "ok\n"


def test_a_key_added_to_known_hosts_is_seen_by_the_same_process(ssh_host_factory, tmp_path):
    from aep_ops.base.errors import HostKeyError

    host = ssh_host_factory()
    known = tmp_path / "known_hosts"
    known.write_text("")
    with host.executor(known_hosts=known) as ex:
        with pytest.raises(HostKeyError, match="unknown SSH host key"):
            ex.run(["true"])
    known.write_text(host.known_hosts_line() + "\n")
    with host.executor(known_hosts=known) as ex:
        assert ex.run(["true"]).ok
