"""incident.diagnose as the on-call engineer runs it: real sshd hosts, a real PostgreSQL with a
session idle in a transaction, real health endpoints (one failing), an application log with
error lines, some of them carrying secrets. What a user checks: the terminal summary says what
is wrong and what to run, the JSON ranks the findings and lists every source with its status and
time, the bundle and its archive hold the raw outputs, and no planted secret is anywhere."""

from __future__ import annotations

import json
import tarfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from tests.support.fleet_hosts import call_while_held
from tests.support.incident_fleet import Health, add_silent, add_stalled, write_incident_config

LOG_SECRET = "PlantedLogPw555x"
QUERY_SECRET = "PlantedQuery777x"
DSN_SECRET = "PlantedDsnPw4242"
SECRETS = (LOG_SECRET, QUERY_SECRET, DSN_SECRET)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@pytest.fixture
def incident_world(ssh_host_factory, pg_cluster, tmp_path, monkeypatch):
    web1, web2 = ssh_host_factory(), ssh_host_factory()
    ok, failing = Health(), Health()
    failing.status = 503
    logs = tmp_path / "applogs"
    logs.mkdir()
    now = datetime.now(timezone.utc)
    (logs / "api.log").write_text(
        f"{_stamp(now - timedelta(hours=2))} ERROR an old failure, outside the window\n"
        f"{_stamp(now - timedelta(minutes=1))} INFO request served\n"
        f"{_stamp(now)} ERROR db login failed password={LOG_SECRET} for user app\n")
    monkeypatch.setenv("INC_DSN", f"{pg_cluster.dsn} password={DSN_SECRET}")
    write_incident_config(tmp_path, monkeypatch, ssh_host_factory,
                          [("web1", web1, ok.url), ("web2", web2, failing.url)], incident=f"""
      deadline_seconds: 5
      dsn: env:INC_DSN
      app_logs: ["{logs}/*.log"]
      host: {{disk_percent: 1}}
      postgres: {{idle_in_transaction_seconds: 1}}""")
    idle = psycopg.connect(pg_cluster.dsn, autocommit=False, application_name="stuck-worker")
    idle.execute(f"select 1 /* password={QUERY_SECRET} */")
    time.sleep(1.2)  # idle in its transaction past the 1 s threshold
    yield {"idle_pid": idle.info.backend_pid}
    idle.close()
    ok.close()
    failing.close()


def test_diagnosis_says_what_is_wrong_where_and_what_to_run(cli, incident_world, tmp_path):
    bundle = tmp_path / "bundle"
    proc = cli("incident.diagnose", "--env", "inc", "--bundle", str(bundle), check_rc=0)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("incident.diagnose on inc (last 30m): "), lines[0]
    text = proc.stdout
    failing = next(i for i, line in enumerate(lines) if line.startswith("  CRIT app") and "503" in line)
    assert lines[failing + 1].strip() == "run: inv service.restart --env inc --role api"
    pid = incident_world["idle_pid"]
    assert "inv db.terminate --env inc" in text and "--idle-in-transaction-older-than" in text, text
    assert str(pid) in text, "the idle session is named by its pid"
    assert "1 error line(s) in" in text, "the old error line lies outside --since 30m"
    for secret in SECRETS:
        assert secret not in proc.stdout + proc.stderr

    data = json.loads(cli("incident.diagnose", "--env", "inc", "--json", "--bundle", str(bundle), check_rc=0).stdout)
    order = {"critical": 0, "warning": 1, "info": 2}
    severities = [order[f["severity"]] for f in data["findings"]]
    assert severities == sorted(severities) and severities[0] == 0, "ranked, most severe first"
    sources = {s["name"]: s for s in data["sources"]}
    assert set(sources) == {"host:web1", "host:web2", "postgres", "app", "tls", "aws"}
    assert {n: s["status"] for n, s in sources.items()} == {
        "host:web1": "ok", "host:web2": "ok", "postgres": "ok", "app": "ok", "tls": "skipped", "aws": "skipped"}
    assert all(isinstance(s["elapsed"], float) for s in sources.values())
    disk = [f for f in data["findings"] if f["source"] == "host:web1" and "of its space used" in f["what"]]
    assert disk and "incident.host.disk_percent" in disk[0]["threshold"], "the threshold that fired is named"
    idle = [f for f in data["findings"] if f["runbook"] == "db.terminate" and "idle" in f["what"]]
    assert idle and idle[0]["threshold"], idle

    directory = Path(data["bundle"]["directory"])
    assert directory.parent == bundle
    files = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert {"summary.md", "diagnosis.json", "raw/host_web1/probe.txt", "raw/app/health.txt"} <= files, files
    assert any(f.startswith("raw/postgres/") for f in files), files
    probe = (directory / "raw/host_web1/probe.txt").read_text()
    assert "password=****" in probe and "db login failed" in probe, "the line is kept, its secret masked"
    with tarfile.open(data["bundle"]["archive"]) as tar:
        names = tar.getnames()
        assert f"{directory.name}/summary.md" in names and f"{directory.name}/raw/host_web1/probe.txt" in names
        archived = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    written = b"".join(p.read_bytes() for p in bundle.rglob("*") if p.is_file())
    for secret in SECRETS:
        assert secret.encode() not in archived and secret.encode() not in written, secret


def test_hung_hosts_are_reported_and_the_diagnosis_ends_at_its_deadline(cli, ssh_host_factory, tmp_path,
                                                                        monkeypatch):
    good = ssh_host_factory()
    stalled, held = add_stalled(ssh_host_factory, tmp_path)
    silent = add_silent(ssh_host_factory, good)
    write_incident_config(tmp_path, monkeypatch, ssh_host_factory,
                          [("good", good, None), ("stalled", stalled, None), ("silent", silent, None)],
                          incident="      deadline_seconds: 3\n      dsn: env:INC_DSN_DOWN")
    monkeypatch.setenv("INC_DSN_DOWN", "host=127.0.0.1 port=1 dbname=x user=x connect_timeout=1")

    def release() -> None:
        silent.release()
        held.release()

    try:
        proc = call_while_held(lambda: cli("incident.diagnose", "--env", "inc", "--json"), release,
                               what="the diagnosis ending while two hosts hang")
    finally:
        release()
        silent.close()
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    sources = {s["name"]: s for s in data["sources"]}
    assert sources["host:good"]["status"] == "ok"
    assert sources["host:stalled"]["status"] == "timeout" and sources["host:silent"]["status"] == "timeout"
    assert sources["postgres"]["status"] in ("error", "timeout")
    assert data["collect_seconds"] <= 3 + 1, data["collect_seconds"]
    hung = [f for f in data["findings"] if f["source"] in ("host:stalled", "host:silent")]
    assert len(hung) == 2 and all(f["severity"] == "critical" for f in hung), hung
    assert "Traceback" not in proc.stderr and "Error reading SSH protocol banner" not in proc.stderr


@pytest.mark.parametrize("args, says", [
    (["--since", "5x"], "--since '5x': expected a span"),
    (["--since", "10s"], "--since '10s': must be between"),
    (["--role", " "], "--role is empty"),
    (["--role", "nosuch"], "nosuch"),
    (["--bundle", ""], "--bundle is empty"),
])
def test_bad_input_is_one_line_and_exit_2(cli, ssh_host_factory, tmp_path, monkeypatch, args, says):
    host = ssh_host_factory()
    write_incident_config(tmp_path, monkeypatch, ssh_host_factory, [("web1", host, None)])
    proc = cli("incident.diagnose", "--env", "inc", *args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    human = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert len(human) == 1 and says in human[0] and "Traceback" not in proc.stderr, proc.stderr


def test_bundle_that_is_a_file_is_refused(cli, ssh_host_factory, tmp_path, monkeypatch):
    host = ssh_host_factory()
    write_incident_config(tmp_path, monkeypatch, ssh_host_factory, [("web1", host, None)])
    (tmp_path / "taken").write_text("x")
    proc = cli("incident.diagnose", "--env", "inc", "--bundle", str(tmp_path / "taken"))
    assert proc.returncode == 2 and "exists and is not a directory" in proc.stderr, proc.stderr


def test_help_describes_every_flag(cli):
    proc = cli("--help", "incident.diagnose", check_rc=0)
    for flag in ("--since", "--role", "--bundle", "--json", "--env"):
        assert flag in proc.stdout, flag
