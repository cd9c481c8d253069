"""certs.deploy's faults as a user meets them, on real sshd hosts each with its own real nginx: a
key that does not match (nginx -t refuses it: rolled back, the old serial verified over TLS), a
host unreachable mid-rollout (stops there; resumes after it), a kill in the middle of one host's
reload (resumes without backing up its own new files), production without --yes."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aep_ops import config
from aep_ops.certs import store
from aep_ops.testing.tlscerts import TestPki
from tests.support.cert_fleet import NAME, start_cert_fleet, write_fleet_config
from tests.support.processes import kill_matching, kill_run_mid_step, pids, spawned

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPki(tmp_path_factory.mktemp("deploy-pki"))


@pytest.fixture
def fleet(ssh_host_factory, pki, tmp_path, monkeypatch):
    first = pki.leaf("first", [NAME])
    fleet = start_cert_fleet(3, ssh_host_factory, first)
    try:
        text = fleet.config(identity=ssh_host_factory.identity, known_hosts=ssh_host_factory.known_hosts)
        text += fleet.config("prod", production=True, identity=ssh_host_factory.identity,
                             known_hosts=ssh_host_factory.known_hosts)
        write_fleet_config(tmp_path, monkeypatch, text)
        fleet.first = first
        yield fleet
    finally:
        fleet.stop()


def stored(env: str, leaf, *, key_from=None):
    """A version of certificate ``api`` in ``env``, as certs.renew would have stored it."""
    now = datetime.now(timezone.utc)
    key = (key_from or leaf).key.read_text()
    return store.save(config.load(env), "api", key_pem=key, cert_pem=leaf.cert.read_text(),
                      chain_pem=leaf.fullchain.read_text()[len(leaf.cert.read_text()):],
                      fullchain_pem=leaf.fullchain.read_text(), serial=leaf.serial, not_before=now, not_after=now,
                      issuer="test", domains=[NAME], key_type="ecdsa-p256", directory="https://ca.test/dir",
                      staging=True, now=now)


def audit_records(state_dir: Path) -> list[dict]:
    path = state_dir / "logs" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_key_that_does_not_match_is_rolled_back_and_the_old_serial_is_served(cli, fleet, pki, state_dir):
    second, stranger = pki.leaf("second", [NAME]), pki.leaf("stranger", [NAME])
    stored("staging", second, key_from=stranger)
    proc = cli("certs.deploy", "--env", "staging", timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    said = next(line for line in proc.stdout.splitlines() if "1. Deploy to the nginx hosts" in line)
    assert "on h01" in said and "nginx -t failed" in said
    assert f"rolled back: h01 serves {fleet.first.serial} again" in said
    assert fleet.served() == {"h01": fleet.first.serial, "h02": fleet.first.serial, "h03": fleet.first.serial}
    h01 = fleet.hosts[0]
    assert h01.cert_file().read_bytes() == fleet.first.fullchain.read_bytes()
    assert h01.key_file().read_bytes() == fleet.first.key.read_bytes()
    assert not Path(f"{fleet.hosts[1].cert_file()}.aep-ops-prev").exists()  # h02 was never touched
    failed = [a for a in audit_records(state_dir) if a["action"] == "certs.deploy"]
    assert [(a["target"], a["result"].split(":")[0]) for a in failed] == [("h01", "failed")]


def test_a_host_unreachable_mid_rollout_stops_there_and_the_run_resumes(cli, fleet, pki, state_dir):
    second = pki.leaf("second", [NAME])
    stored("staging", second)
    fleet.hosts[1].ssh.stop()
    try:
        proc = cli("certs.deploy", "--env", "staging", "--json", timeout=120)
    finally:
        fleet.hosts[1].ssh.start()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert "on h02" in result["error"]
    assert fleet.served() == {"h01": second.serial, "h02": fleet.first.serial, "h03": fleet.first.serial}

    resumed = cli("certs.deploy", "--env", "staging", "--resume", result["run_id"], "--json", timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    hosts = json.loads(resumed.stdout)["outputs"]["ensure_nginx_deployed"]["hosts"]
    outcomes = {h["host"]: h["outcome"] for h in hosts}
    assert outcomes == {"h01": "unchanged", "h02": "changed", "h03": "changed"}
    assert fleet.served() == {"h01": second.serial, "h02": second.serial, "h03": second.serial}
    ok = [a["target"] for a in audit_records(state_dir) if a["action"] == "certs.deploy" and a["result"] == "ok"]
    assert ok == ["h01", "h02", "h03"]  # each host changed once


def test_killed_during_one_hosts_reload_then_resumed(cli, fleet, pki, state_dir, tmp_path):
    """The run is killed while h02's reload is held (its new files written, not yet served); the
    held reload is then killed too, so h02 really is left half-done. The resume finishes h02
    without taking its own new files for the previous ones, then h03."""
    second = pki.leaf("second", [NAME])
    stored("staging", second)
    h02 = fleet.hosts[1]
    fifo = h02.hold_reload()
    with spawned([str(BIN / "inv"), "certs.deploy", "--env", "staging"], log=tmp_path / "deploy.log") as proc:
        run_id = kill_run_mid_step(proc, state_dir, "ensure_nginx_deployed", child=str(fifo))
    kill_matching(str(fifo))
    h02.release_reload()
    assert fleet.served() == {"h01": second.serial, "h02": fleet.first.serial, "h03": fleet.first.serial}
    assert h02.cert_file().read_bytes() == second.fullchain.read_bytes()  # written, never reloaded

    resumed = cli("certs.deploy", "--env", "staging", "--resume", run_id, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert fleet.served() == {"h01": second.serial, "h02": second.serial, "h03": second.serial}
    assert Path(f"{h02.cert_file()}.aep-ops-prev").read_bytes() == fleet.first.fullchain.read_bytes()
    assert not pids(str(fifo))


def test_production_needs_yes(cli, fleet, pki):
    second = pki.leaf("second", [NAME])
    stored("prod", second)
    refused = cli("certs.deploy", "--env", "prod", timeout=120)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert set(fleet.served().values()) == {fleet.first.serial}
    approved = cli("certs.deploy", "--env", "prod", "--yes", timeout=120)
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert set(fleet.served().values()) == {second.serial}



def test_acm_through_the_cli_reimported_verified_and_a_wrong_key_refused(cli, pki, tmp_path, monkeypatch,
                                                                         moto_account, state_dir):
    """The ACM step as a user runs it (moto in this test's own account; the checks that real ACM
    makes and moto does not are aep-ops's own, so the refusal is tested here)."""
    moto_account.use_in(monkeypatch)
    acm = moto_account.client("acm")
    old = pki.leaf("acm-old", [NAME])
    arn = acm.import_certificate(Certificate=old.cert.read_bytes(), PrivateKey=old.key.read_bytes(),
                                 CertificateChain=pki.intermediate_file.read_bytes())["CertificateArn"]
    write_fleet_config(tmp_path, monkeypatch, f"""  staging:
    production: false
    backend: local
    aws: {moto_account.aws_yaml}
    certificates:
      - {{name: api, domains: [{NAME}], acm: {{certificate_arn: "{arn}"}}}}
""")

    def acm_serial() -> str:
        from aep_ops.certs.acm import normalize_serial

        return normalize_serial(acm.describe_certificate(CertificateArn=arn)["Certificate"]["Serial"])

    stored("staging", pki.leaf("acm-wrong", [NAME]), key_from=pki.leaf("acm-stranger", [NAME]))
    refused = cli("certs.deploy", "--env", "staging", timeout=120)
    assert refused.returncode == 1 and "does not match" in refused.stdout, refused.stdout + refused.stderr
    assert acm_serial() == old.serial

    new = pki.leaf("acm-new", [NAME])
    stored("staging", new)
    proc = cli("certs.deploy", "--env", "staging", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert acm_serial() == new.serial
    assert len(acm.list_certificates()["CertificateSummaryList"]) == 1  # the same ARN, not a new certificate
    again = cli("certs.deploy", "--env", "staging", "--json", timeout=120)
    assert [s["status"] for s in json.loads(again.stdout)["steps"]] == ["unchanged", "unchanged"]
