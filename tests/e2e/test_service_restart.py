"""service.restart through the CLI as an on-call engineer runs it: real sshd hosts, each running a
real HTTP service process that the (stand-in) systemctl really stops and starts again; the
health gate over HTTP; no load balancer (tests/integration/test_service_restart.py has ELBv2)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.processes import assert_killed_mid_step, spawned
from tests.support.service_fleet import DownProbe, ServiceFleet

pytestmark = pytest.mark.slow


@pytest.fixture
def fleet(ssh_host_factory, tmp_path):
    service_fleet = ServiceFleet(ssh_host_factory, tmp_path / "fleet")
    yield service_fleet
    service_fleet.close()


def write_config(tmp_path, fleet: ServiceFleet, *, health_timeout: int = 10) -> dict:
    env_block = (
        f"    ssh: {{user: root, identity: '{fleet.ssh_fleet.identity}', known_hosts: '{fleet.ssh_fleet.known_hosts}',"
        f" connect_timeout: 4}}\n"
        f"    hosts:\n{fleet.inventory()}"
        f"    service:\n"
        f"      restart_command: ['{fleet.systemctl}', restart, '--', '{{unit}}']\n"
        f"      health_checks: 3\n      health_timeout: {health_timeout}\n      restart_timeout: 30\n")
    conf = tmp_path / "service.yaml"
    conf.write_text(f"environments:\n  staging:\n{env_block}  prod:\n{env_block}")
    return {"AEP_OPS_CONFIG": str(conf)}


def audit_restarts(state_dir) -> list[tuple[str, str]]:
    path = state_dir / "logs" / "audit.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(r["target"], r["result"]) for r in records if r["action"] == "service.restart:restart"]


def state_file(state_dir, run_id: str) -> dict:
    return json.loads((state_dir / "service" / "staging" / f"{run_id}.json").read_text())


def test_rolls_the_role_one_host_at_a_time_each_really_restarted_and_a_second_run_does_it_again(
        cli, fleet, tmp_path, state_dir):
    fleet.add(3)
    [db] = fleet.add(1, role="db")
    env = write_config(tmp_path, fleet)
    api = [h for h in fleet.hosts if h.role == "api"]
    before = fleet.pids()

    dry = cli("service.restart", "--env", "staging", "--role", "api", "--dry-run", env=env, check_rc=0)
    assert "3 host(s) of role api run aep-api" in dry.stdout and "3 healthy in service, min 1" in dry.stdout
    assert "would change: restart aep-api on 3 host(s), 1 at a time: h01, h02, h03" in dry.stdout
    assert fleet.pids() == before and all(h.calls() == [] for h in fleet.hosts), "a dry run restarts nothing"

    started = time.monotonic()
    with DownProbe(fleet.hosts) as probe:
        proc = cli("service.restart", "--env", "staging", "--role", "api", "--json", env=env, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert [s["status"] for s in result["steps"]] == ["unchanged", "changed", "unchanged"], result.get("error")
    assert result["hosts"] == {"h01": "done", "h02": "done", "h03": "done"}
    after = fleet.pids()
    for host in api:  # a new process serves, and it is the one the restart started
        assert after[host.name] not in (None, before[host.name]) and after[host.name] == host.starts()[-1]
        assert host.calls() == ["restart -- aep-api"] and host.healthy()
    assert after[db.name] == before[db.name] and db.calls() == [], "another role is never touched"
    assert probe.seen_down == {"h01", "h02", "h03"} and probe.most_down == 1, (probe.seen_down, probe.most_down)
    # The state history: each host was done before the next one was drained.
    hosts = state_file(state_dir, result["run_id"])["hosts"]
    history = [(e["at"], name, e["state"]) for name, h in hosts.items() for e in h["history"]]
    assert [(n, s) for _, n, s in sorted(history)] == [
        (n, s) for n in ("h01", "h02", "h03") for s in ("drained", "restarted", "healthy", "done")]
    assert sorted(audit_restarts(state_dir)) == [("h01", "ok"), ("h02", "ok"), ("h03", "ok")]
    spans = [datetime.fromisoformat(h["history"][-1]["at"]) - datetime.fromisoformat(h["history"][0]["at"])
             for h in hosts.values()]
    print(f"\nservice.restart: 3 hosts in {elapsed:.1f}s (whole CLI run); drained -> back in service per host:"
          f" {', '.join(f'{span.total_seconds():.2f}s' for span in spans)}")

    # A second run restarts every host again: that is what the user asked for.
    second = cli("service.restart", "--env", "staging", "--role", "api", "--json", env=env, timeout=120)
    assert second.returncode == 0, second.stderr[-3000:]
    again = fleet.pids()
    assert all(again[h.name] not in (None, after[h.name]) and len(h.starts()) == 3 for h in api)
    assert len(audit_restarts(state_dir)) == 6
    # Resuming a finished run changes nothing.
    done = cli("service.restart", "--env", "staging", "--resume", result["run_id"], env=env, timeout=60)
    assert done.returncode == 2 and "already succeeded" in done.stderr, done.stderr[-2000:]
    assert fleet.pids() == again and all(len(h.starts()) == 3 for h in api)


def test_a_host_that_does_not_come_back_healthy_stops_the_rollout_and_resume_finishes_it(
        cli, fleet, tmp_path, state_dir):
    fleet.add(3)
    h01, h02, h03 = fleet.hosts
    h02.flag("break-on-restart")  # its new process answers 503
    env = write_config(tmp_path, fleet, health_timeout=2)
    before = fleet.pids()

    proc = cli("service.restart", "--env", "staging", "--role", "api", "--json", env=env, timeout=120)

    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert "h02 at health" in result["error"] and "last: HTTP 503" in result["error"], result["error"]
    assert "not started: h03" in result["error"]
    assert result["hosts"] == {"h01": "done", "h02": "failed at health", "h03": "pending"}
    assert h03.calls() == [] and fleet.pids()["h03"] == before["h03"], "hosts after the failure are untouched"
    assert len(h01.starts()) == 2 and len(h02.starts()) == 2
    assert ("h02", "ok") in audit_restarts(state_dir)
    # A new run would drain h02 again and record it as not in service: refused until this one is finished.
    fresh = cli("service.restart", "--env", "staging", "--role", "api", env=env, timeout=60)
    left = f"run {result['run_id']} left h02 (failed at health) out of service"
    assert fresh.returncode == 2 and left in fresh.stderr, fresh.stderr[-2000:]

    h02.set_health(None)  # the on-call engineer fixes what made it unhealthy
    h02.flag("break-on-restart", on=False)
    resumed = cli("service.restart", "--env", "staging", "--resume", result["run_id"], "--json", env=env,
                  timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["hosts"] == {"h01": "done", "h02": "done", "h03": "done"}
    assert len(h01.starts()) == 2, "h01 was done: not restarted again"
    assert len(h02.starts()) == 2, "h02 failed at its health gate: the resume continued from there"
    assert len(h03.starts()) == 2 and all(h.healthy() for h in fleet.hosts)


def test_production_needs_yes_and_a_crashed_host_is_restarted_first(cli, fleet, tmp_path, state_dir):
    """The remediation case: h03's service died (its unit failed). In production (min 2 healthy)
    with 2 of 3 serving, h03 goes first: restarting it costs no capacity; then the others, each
    leaving 2 in service."""
    fleet.add(3)
    env = write_config(tmp_path, fleet)
    before = fleet.pids()
    proc = cli("service.restart", "--env", "prod", "--role", "api", env=env, timeout=60)
    assert proc.returncode == 4 and "--yes" in proc.stderr, proc.stderr[-2000:]
    assert fleet.pids() == before and all(h.calls() == [] for h in fleet.hosts)
    assert audit_restarts(state_dir) == []

    fleet.stop_service(fleet.by_name("h03"))
    approved = cli("service.restart", "--env", "prod", "--role", "api", "--yes", "--json", env=env, timeout=120)
    assert approved.returncode == 0, approved.stderr[-3000:]
    result = json.loads(approved.stdout)
    assert result["outputs"]["plan_restart"]["batches"] == [["h03"], ["h01"], ["h02"]]
    assert [target for target, _ in audit_restarts(state_dir)] == ["h03", "h01", "h02"]
    assert all(h.healthy() and len(h.starts()) == 2 for h in fleet.hosts)
    refused = cli("service.restart", "--env", "prod", "--role", "api", "--batch", "2", "--yes", env=env, timeout=60)
    assert refused.returncode == 2 and "batch 1 (h01, h02) would leave 1, below patching.min_healthy=2" \
        in refused.stderr, refused.stderr[-2000:]


BAD_INPUT = [
    ([], "--role is required"),
    (["--role", ""], "--role is empty"),
    (["--role", "  "], "--role is empty"),
    (["--role", "web"], "no host of environment staging with role 'web' (roles present: api, db)"),
    (["--role", "api", "--unit", "x;rm"], "--unit 'x;rm' holds a character a systemd unit name cannot"),
    (["--role", "api", "--unit", "-x"], "--unit '-x' begins with '-'"),
    (["--role", "api", "--unit", ""], "--unit '' is empty"),
    (["--role", "api", "--batch", "0"], "--batch '0': must be 1..N hosts"),
]


def test_bad_input_is_one_line_and_exit_2_and_touches_no_host(cli, fleet, tmp_path):
    fleet.add(1)
    fleet.add(1, role="db")
    env = write_config(tmp_path, fleet)
    for args, message in BAD_INPUT:
        proc = cli("service.restart", "--env", "staging", *args, env=env, timeout=60)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.returncode, proc.stderr[-2000:])
        assert message in lines[0] and "Traceback" not in proc.stderr + proc.stdout, (args, lines[0])
    assert all(h.calls() == [] for h in fleet.hosts)


def test_a_run_killed_while_a_host_waits_for_health_resumes_without_restarting_finished_hosts(
        fleet, tmp_path, state_dir):
    fleet.add(3)
    h01, h02, h03 = fleet.hosts
    h02.flag("break-on-restart")  # h02 waits at its health gate until the test makes it healthy
    env = write_config(tmp_path, fleet, health_timeout=20)
    repo = Path(__file__).resolve().parents[2]
    argv = [str(Path(sys.executable).parent / "inv"), "service.restart", "--env", "staging", "--role", "api"]
    full_env = {**os.environ, "PYTHONPATH": str(repo), **env}

    with spawned([*argv, "--json"], log=tmp_path / "run.log", cwd=repo, env=full_env) as proc:
        deadline = time.monotonic() + 60
        while not (h02.dir / "health-status").exists() or len(h02.starts()) < 2:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "h02 was never restarted"
            time.sleep(0.02)
        [path] = (state_dir / "service" / "staging").glob("*.json")
        run_id = path.stem
        while state_file(state_dir, run_id)["hosts"]["h02"]["state"] != "restarted":
            assert time.monotonic() < deadline, "h02 never reached its health gate"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    assert_killed_mid_step(state_dir, run_id, "run_restart")
    states = {n: h["state"] for n, h in state_file(state_dir, run_id)["hosts"].items()}
    assert states == {"h01": "done", "h02": "restarted", "h03": "pending"}
    while h02.pid() != h02.starts()[-1]:  # "restarted" is recorded when systemctl returns: it may still start
        assert time.monotonic() < deadline, "h02's new process never answered"
        time.sleep(0.02)
    pids = fleet.pids()
    h02.set_health(None)
    h02.flag("break-on-restart", on=False)

    with spawned([*argv, "--resume", run_id, "--json"], log=tmp_path / "resume.log", cwd=repo,
                 env=full_env) as resumed:
        assert resumed.wait(timeout=120) == 0, (tmp_path / "resume.log").read_text()[-3000:]
    after = fleet.pids()
    assert after["h01"] == pids["h01"] and len(h01.starts()) == 2, "h01 was done: not restarted again"
    assert after["h02"] == pids["h02"] and len(h02.starts()) == 2, "h02 waited for health: not restarted again"
    assert after["h03"] not in (None, pids["h03"]) and len(h03.starts()) == 2
    assert {n: h["state"] for n, h in state_file(state_dir, run_id)["hosts"].items()} == dict.fromkeys(
        ("h01", "h02", "h03"), "done")
    assert all(h.healthy() for h in fleet.hosts)
