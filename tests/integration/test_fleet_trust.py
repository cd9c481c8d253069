"""fleet.trust through the real CLI, against real sshd hosts: the keys a host offers are shown,
and recorded in known_hosts only with --yes or a "y" on a terminal, in every environment.
A runbook: journaled, locked, --dry-run writes nothing, a second run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import BIN, REPO
from tests.support.fleet_hosts import configured_fleet, run_json


@pytest.fixture
def fleet(ssh_host_factory, tmp_path, monkeypatch):
    """Two hosts (web1, web2), listed in environments `fleet` and `fleetprod` (production)."""
    return configured_fleet(2, ssh_host_factory, tmp_path, monkeypatch)


def audit_lines(state_dir, action="fleet.trust"):
    path = state_dir / "logs" / "audit.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(a["action"], a["result"]) for a in lines if a["action"] == action]


def test_trust_shows_the_fingerprint_appends_only_with_yes_then_run_works(cli, fleet, tmp_path, isolated):
    host = fleet[0]
    known = tmp_path / "ops" / "known_hosts"
    base = ("--env", "fleet", "--known-hosts", str(known))

    refused = cli("fleet.trust", host.address, "--port", str(host.port), *base)
    assert refused.returncode == 4, "not a terminal and no --yes: nothing may be recorded"
    assert host.host_key_fingerprint in refused.stdout and not known.exists()
    assert "error: nothing recorded: check the fingerprint(s) above out of band" in refused.stderr
    assert audit_lines(isolated) == [("fleet.trust", "refused: not confirmed")]
    prod = cli("fleet.trust", host.address, "--port", str(host.port), "--env", "fleetprod", "--known-hosts", str(known))
    assert prod.returncode == 4 and "error: nothing recorded" in prod.stderr, "production: the same question"

    added = cli("fleet.trust", host.address, "--port", str(host.port), "--yes", *base, check_rc=0)
    assert "ssh-ed25519" in added.stdout and host.host_key_fingerprint in added.stdout
    assert known.read_text() == host.known_hosts_line() + "\n"
    assert audit_lines(isolated)[-1] == ("fleet.trust", "ok")

    again = cli("fleet.trust", "web1", "--yes", *base, check_rc=0)  # an inventory name works too
    assert "nothing to do" in again.stdout and known.read_text() == host.known_hosts_line() + "\n"

    proc, data = run_json(cli, *base, "--hosts", "web1", "--", "echo trusted", rc=0)
    assert data["hosts"][0]["stdout"] == "trusted\n"


def test_trust_refuses_a_changed_key(cli, fleet, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"[{fleet[0].address}]:{fleet[0].port} {' '.join(fleet[1].host_public_key.split()[:2])}\n")
    proc = cli("fleet.trust", fleet[0].address, "--port", str(fleet[0].port), "--known-hosts", str(known), "--yes")
    assert proc.returncode == 1 and "HOST KEY CHANGED" in proc.stderr
    assert len(known.read_text().splitlines()) == 1


def test_trust_twice_changes_nothing_the_second_time(cli, fleet, tmp_path, isolated):
    host, known = fleet[1], tmp_path / "known_hosts"
    known.write_text(fleet[0].known_hosts_line())  # another host's entry, without a final newline
    args = ("fleet.trust", host.address, "--port", str(host.port), "--env", "fleet", "--known-hosts", str(known),
            "--yes", "--json")

    first = json.loads(cli(*args, check_rc=0).stdout)
    after_first = known.read_bytes()
    second = json.loads(cli(*args, check_rc=0).stdout)

    assert [s["status"] for s in first["steps"]] == ["unchanged", "changed"]
    assert [s["status"] for s in second["steps"]] == ["unchanged", "unchanged"]
    assert second["run_id"] != first["run_id"] and second["status"] == "succeeded"
    assert after_first == f"{fleet[0].known_hosts_line()}\n{host.known_hosts_line()}\n".encode()
    assert known.read_bytes() == after_first, "the second run wrote nothing"
    assert audit_lines(isolated) == [("fleet.trust", "ok")], "one change, audited once"
    runs = cli("runs.list", "--json", check_rc=0).stdout
    assert first["run_id"] in runs and second["run_id"] in runs, "both runs are journaled"


def test_trust_dry_run_shows_the_plan_and_writes_nothing(cli, fleet, tmp_path, isolated):
    host, known = fleet[0], tmp_path / "ops" / "known_hosts"

    proc = cli("fleet.trust", host.address, "--port", str(host.port), "--env", "fleet", "--known-hosts", str(known),
               "--dry-run", check_rc=0)

    assert host.host_key_fingerprint in proc.stdout
    assert f"would change: add 1 key(s) for {host.address}:{host.port} to {known}" in proc.stdout
    assert not known.exists() and not known.parent.exists()
    assert audit_lines(isolated) == [] and "[y/N]" not in proc.stdout, "nothing asked, nothing recorded"


@pytest.mark.parametrize("answer, rc, recorded", [("y", 0, True), ("n", 4, False)])
def test_trust_asks_on_a_terminal(fleet, tmp_path, isolated, answer, rc, recorded):
    """stdin is a pseudo-terminal: the y/N question is asked and only "y" records the key."""
    import pty

    host, known = fleet[0], tmp_path / "known_hosts"
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(BIN / "inv"), "fleet.trust", host.address, "--port", str(host.port), "--known-hosts", str(known)],
            cwd=REPO, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.write(controller, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == rc, (out, err)
    assert f"to {known}? [y/N]" in out and host.host_key_fingerprint in out
    assert known.exists() == recorded
    if recorded:
        assert known.read_text() == host.known_hosts_line() + "\n"
    else:
        assert audit_lines(isolated) == [("fleet.trust", "refused: not confirmed")]


def test_trust_killed_at_its_question_resumes_with_yes_and_records_the_key_once(fleet, tmp_path, isolated):
    """The engineer's terminal dies while fleet.trust waits for y/N (kill -9, as a lost session or
    the OOM killer would): nothing is recorded, and `--resume RUN --yes` finishes that same run."""
    import pty
    import select
    import signal

    from tests.support.processes import latest_run_id

    host, known = fleet[0], tmp_path / "known_hosts"
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / "inv"), "fleet.trust", host.address, "--port", str(host.port), "--known-hosts", str(known)],
        cwd=REPO, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        seen = b""
        while b"[y/N]" not in seen:  # the question is on stdout: the step is in apply, waiting
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, f"no question within 60 s: {seen!r}"
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"fleet.trust ended before asking: {seen!r}"
            seen += chunk
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.stdout.close()
        os.close(controller)
        os.close(terminal)
    assert not known.exists(), "killed before the answer: nothing recorded"
    run_id = latest_run_id(isolated, "fleet.trust")

    resumed = subprocess.run([str(BIN / "inv"), "fleet.trust", "--resume", run_id, "--yes", "--json"], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id and result["status"] == "succeeded"
    assert known.read_text() == host.known_hosts_line() + "\n", "the key, once"
    assert audit_lines(isolated)[-1] == ("fleet.trust", "ok")
