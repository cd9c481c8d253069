"""certs.renew as a user runs it: a real ACME CA (pebble, validating http-01 over real HTTP), real
sshd hosts each with its own real nginx, the CLI in a separate process.

What a user checks: every host serves the new serial over TLS (asked by its own address with
SNI), the version is stored with its key 0600, the challenge files are gone, a second run
changes nothing, a dry run stores nothing, a CA that is down changes nothing."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from aep_ops.testing.tlscerts import TestPki
from tests.support.cert_fleet import NAME, start_cert_fleet, write_fleet_config


@pytest.fixture(scope="module")
def first_cert(tmp_path_factory):
    pki = TestPki(tmp_path_factory.mktemp("renew-pki"))
    return pki.leaf("first", [NAME, "www.aep.test"])


@pytest.fixture
def fleet(ssh_host_factory, pebble, first_cert):
    fleet = start_cert_fleet(3, ssh_host_factory, first_cert, http_port=pebble.http_port)
    try:
        yield fleet
    finally:
        fleet.stop()


def acme_block(pebble, directory: str | None = None, staging: str | None = None) -> str:
    url = directory or pebble.directory_url
    return (f"    acme: {{directory: '{url}', staging_directory: '{staging or pebble.directory_url}',"
            f" ca_bundle: {pebble.ca_file}, contact: ops@aep.test}}\n")


@pytest.fixture
def configured(fleet, pebble, ssh_host_factory, tmp_path, monkeypatch):
    write_fleet_config(tmp_path, monkeypatch, fleet.config(acme=acme_block(pebble), identity=ssh_host_factory.identity,
                                                           known_hosts=ssh_host_factory.known_hosts))
    return fleet


def test_renew_issues_stores_and_deploys_to_every_host_then_changes_nothing(cli, configured, first_cert, state_dir):
    fleet = configured
    assert set(fleet.served().values()) == {first_cert.serial}
    proc = cli("certs.renew", "--env", "staging", "--json", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    issued = result["outputs"]["ensure_issued"]["issued"]
    assert [i["name"] for i in issued] == ["api"] and issued[0]["version"] == 1
    serial = issued[0]["serial"]
    assert fleet.served() == {"h01": serial, "h02": serial, "h03": serial}

    version = state_dir / "certs" / "staging" / "api" / "versions" / "0001"
    assert stat.S_IMODE(os.stat(version / "privkey.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(version.parent).st_mode) == 0o700
    assert json.loads((version / "meta.json").read_text())["serial"] == serial
    for host in fleet.hosts:
        assert host.cert_file().read_text() == (version / "fullchain.pem").read_text()
        assert stat.S_IMODE(os.stat(host.key_file()).st_mode) == 0o600
        assert Path(f"{host.cert_file()}.aep-ops-prev").read_bytes() == first_cert.fullchain.read_bytes()
        assert host.challenge_files() == []  # written for the CA, removed after
    audit = [json.loads(line) for line in (state_dir / "logs" / "audit.jsonl").read_text().splitlines()]
    deploys = [a for a in audit if a.get("action") == "certs.deploy" and a.get("result") == "ok"]
    assert sorted(a["target"] for a in deploys) == ["h01", "h02", "h03"]

    again = cli("certs.renew", "--env", "staging", "--json", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    steps = {s["step_id"]: s["status"] for s in json.loads(again.stdout)["steps"]}
    assert steps == {"renewal_due": "unchanged", "ensure_issued": "unchanged", "ensure_nginx_deployed": "unchanged",
                     "ensure_acm_deployed": "unchanged"}
    assert not (version.parent / "0002").exists()
    assert fleet.served() == {"h01": serial, "h02": serial, "h03": serial}


def test_the_private_key_appears_in_no_output_log_journal_or_report(cli, configured, state_dir):
    proc = cli("certs.renew", "--env", "staging", "--json", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    key = (state_dir / "certs" / "staging" / "api" / "versions" / "0001" / "privkey.pem").read_text()
    body = [line for line in key.splitlines() if line and not line.startswith("-----")]
    assert body
    runs = cli("runs.list", "--json").stdout + cli("runs.show", json.loads(proc.stdout)["run_id"], "--json").stdout
    texts = {"stdout": proc.stdout, "stderr": proc.stderr, "runs": runs}
    for path in state_dir.rglob("*"):
        if path.is_file() and "versions" not in path.parts and path.name != "acme-account.pem":
            texts[str(path)] = path.read_bytes().decode(errors="replace")
    assert any(str(p).endswith("journal.sqlite3") for p in texts) and any("audit" in p for p in texts)
    for where, text in texts.items():
        for line in body:
            assert line not in text, f"a line of the private key is in {where}"


def test_dry_run_orders_from_staging_and_stores_nothing(cli, configured, first_cert, state_dir):
    proc = cli("certs.renew", "--env", "staging", "--dry-run", timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "staging issued serial" in proc.stdout + proc.stderr
    assert not (state_dir / "certs" / "staging" / "api" / "versions").exists()
    assert set(configured.served().values()) == {first_cert.serial}
    assert all(h.challenge_files() == [] for h in configured.hosts)


def test_a_ca_that_is_down_changes_nothing_and_says_so(cli, fleet, pebble, first_cert, ssh_host_factory, tmp_path,
                                                       monkeypatch, state_dir):
    from aep_ops.testing.ports import free_port

    down = f"https://127.0.0.1:{free_port()}/dir"
    write_fleet_config(tmp_path, monkeypatch, fleet.config(acme=acme_block(pebble, down, down),
                                                           identity=ssh_host_factory.identity,
                                                           known_hosts=ssh_host_factory.known_hosts))
    proc = cli("certs.renew", "--env", "staging", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = [line for line in proc.stdout.splitlines() if "2. Issue the due certificates" in line]
    assert said and f"ACME directory {down} unreachable: connection refused" in said[0], proc.stdout
    assert "Traceback" not in proc.stderr
    assert set(fleet.served().values()) == {first_cert.serial}
    assert not (state_dir / "certs" / "staging" / "api" / "versions").exists()

    dry = cli("certs.renew", "--env", "staging", "--dry-run", timeout=120)  # a failed trial fails the dry run
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert dry.stderr.strip().splitlines()[-1] == "certs.renew: dry run failed at step 2 (ensure_issued)"


def test_production_refuses_a_staging_directory_and_needs_yes(cli, fleet, pebble, ssh_host_factory, tmp_path,
                                                              monkeypatch):
    text = fleet.config("prod", production=True, acme=acme_block(pebble), identity=ssh_host_factory.identity,
                        known_hosts=ssh_host_factory.known_hosts)
    write_fleet_config(tmp_path, monkeypatch, text)
    proc = cli("certs.renew", "--env", "prod", "--yes")
    assert proc.returncode == 2 and "staging (test) CA" in proc.stderr
    deploy = cli("certs.deploy", "--env", "prod", "--name", "api")
    assert deploy.returncode == 2 and "no issued version yet" in deploy.stderr


def test_the_cas_renewal_window_decides_and_certs_list_says_why(cli, fleet, pebble, ari_shim, ssh_host_factory,
                                                                 tmp_path, monkeypatch):
    """The CA (through an ARI shim in front of pebble, which has no ARI) moves the renewal window:
    into the past, the certificate is renewed at once; into the future, it is left alone until then."""
    from datetime import datetime, timedelta, timezone

    write_fleet_config(tmp_path, monkeypatch, fleet.config(acme=acme_block(pebble, ari_shim.directory_url),
                                                           identity=ssh_host_factory.identity,
                                                           known_hosts=ssh_host_factory.known_hosts))
    now = datetime.now(timezone.utc)
    try:
        first = cli("certs.renew", "--env", "staging", "--set", "certs.random_delay=1", timeout=180)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "(a random delay off a terminal; certs.random_delay is 1 s)" in first.stderr  # due, no terminal
        listed = json.loads(cli("certs.list", "--env", "staging", "--json").stdout)[0]
        assert listed["current"] == 1 and listed["next_renewal"]["due"] is False
        assert "two thirds of the" in listed["next_renewal"]["reason"]  # no window offered yet: 404

        ari_shim.set_window(now - timedelta(hours=2), now - timedelta(hours=1))
        proc = cli("certs.renew", "--env", "staging", "--json", timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout)["outputs"]["ensure_issued"]["issued"][0]["version"] == 2
        assert "ARI window" in json.loads(proc.stdout)["outputs"]["renewal_due"]["certificates"][0]["reason"]

        start, end = now + timedelta(days=10), now + timedelta(days=11)
        ari_shim.set_window(start, end)
        again = json.loads(cli("certs.renew", "--env", "staging", "--json", timeout=120).stdout)
        assert again["outputs"]["ensure_issued"]["summary"] == "nothing is due"
        listed = json.loads(cli("certs.list", "--env", "staging", "--json").stdout)[0]
        renew_at = datetime.fromisoformat(listed["next_renewal"]["renew_at"])
        assert listed["current"] == 2 and start <= renew_at <= end and "ARI window" in listed["next_renewal"]["reason"]
        assert [v["number"] for v in listed["versions"]] == [1, 2]
        text = cli("certs.list", "--env", "staging").stdout
        assert "* v2" in text and "  v1" in text and "next renewal:" in text
    finally:
        ari_shim.clear_windows()
    assert set(fleet.served().values()) == {listed["versions"][1]["serial"]}


def test_killed_mid_deploy_the_renewal_resumes_without_ordering_again(cli, configured, state_dir, tmp_path):
    """Killed while h02's reload is held: the new version is stored, h01 serves it. The resume
    orders nothing (the stored version is no longer due) and finishes h02 and h03."""
    import sys

    from tests.support.processes import kill_matching, kill_run_mid_step, spawned

    fleet = configured
    h02 = fleet.hosts[1]
    fifo = h02.hold_reload()
    inv = str(Path(sys.executable).parent / "inv")
    with spawned([inv, "certs.renew", "--env", "staging"], log=tmp_path / "renew.log") as proc:
        run_id = kill_run_mid_step(proc, state_dir, "ensure_nginx_deployed", child=str(fifo), timeout=120)
    kill_matching(str(fifo))
    h02.release_reload()
    versions = state_dir / "certs" / "staging" / "api" / "versions"
    serial = json.loads((versions / "0001" / "meta.json").read_text())["serial"]
    assert fleet.served()["h01"] == serial and fleet.served()["h03"] != serial

    resumed = cli("certs.renew", "--env", "staging", "--resume", run_id, "--json", timeout=180)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    steps = {s["step_id"]: s for s in json.loads(resumed.stdout)["steps"]}
    assert steps["ensure_issued"]["earlier"] is True  # done before the kill, not redone
    assert sorted(p.name for p in versions.iterdir()) == ["0001"]
    assert fleet.served() == {"h01": serial, "h02": serial, "h03": serial}
