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
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.fleet_hosts import configured_fleet, run_json


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
    # An environment with no inventory at all: --hosts, --identity and --known-hosts are enough.
    cli("fleet.run", "--env", "local", "--hosts", spec, "--identity", str(ssh_host_factory.identity),
        "--known-hosts", str(ssh_host_factory.known_hosts), "--", "true", check_rc=0)


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


def test_a_host_that_never_answers_does_not_hold_the_run(cli, fleet, tmp_path):
    """A listener that accepts TCP and never speaks SSH (a hung host)."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    port = hung.getsockname()[1]
    try:
        started = time.monotonic()
        proc, data = run_json(cli, "--env", "fleet", "--hosts", f"web1,web2,127.0.0.1:{port}",
                              "--timeout", "3", "--", "true", rc=1)
        elapsed = time.monotonic() - started
    finally:
        hung.close()
    assert [h["status"] for h in data["hosts"]] == ["ok", "ok", "unreachable"]
    assert elapsed < 3 + 3, f"the whole CLI took {elapsed:.1f}s with a 3 s deadline"


def test_facts_parse_this_machines_real_output(cli, fleet):
    proc = cli("fleet.facts", "--env", "fleet", "--hosts", "web1,web2", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    upgradable = subprocess.run("LC_ALL=C apt list --upgradable 2>/dev/null", shell=True, capture_output=True,
                                text=True).stdout.splitlines()
    upgradable = [x for x in upgradable if "[upgradable from" in x]
    for row in rows:
        assert row["status"] == "ok" and row["error"] is None
        assert row["os"] == release["PRETTY_NAME"].strip('"')
        assert (row["os_id"], row["os_version"]) == (release["ID"], release.get("VERSION_ID", "").strip('"'))
        assert row["kernel"] == os.uname().release
        assert abs(row["uptime_seconds"] - float(Path("/proc/uptime").read_text().split()[0])) < 60
        assert row["reboot_required"] is os.path.exists("/var/run/reboot-required")
        assert row["updates"] == len(upgradable)
        assert row["security_updates"] == sum("-security" in x.split(" ", 1)[0] for x in upgradable)
        assert 0 <= row["security_updates"] <= row["updates"]
    table = cli("fleet.facts", "--env", "fleet", "--hosts", "web1", check_rc=0).stdout.splitlines()
    assert table[0].split() == ["HOST", "OS", "KERNEL", "UPTIME", "UPDATES", "SECURITY", "REBOOT"]
    assert table[1].startswith("web1") and os.uname().release in table[1]


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
    from aep_ops.errors import HostKeyError

    host = ssh_host_factory()
    known = tmp_path / "known_hosts"
    known.write_text("")
    with host.executor(known_hosts=known) as ex:
        with pytest.raises(HostKeyError, match="unknown SSH host key"):
            ex.run(["true"])
    known.write_text(host.known_hosts_line() + "\n")
    with host.executor(known_hosts=known) as ex:
        assert ex.run(["true"]).ok
