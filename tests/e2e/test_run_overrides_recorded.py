"""Every run records its effective overrides (--set, AEP_OPS_*), masked: in runs.show (text and
--json) and in its audit records, in the SQLite and in the PostgreSQL journal."""

from __future__ import annotations

import json

import pytest

CANARY = "canary-7d41e9b03a"  # the value behind the secret reference: it must appear nowhere


def _audit(state_dir):
    return [json.loads(line) for line in (state_dir / "logs" / "audit.jsonl").read_text().splitlines()]


def _run(cli, env, *extra):
    proc = cli("demo.greet", "--name", "Ada", "--json", "--set", "drill.scale=3",
               "--set", "environments.prod.database.password=env:AEP_CANARY_PW", *extra, env=env, check_rc=0)
    return json.loads(proc.stdout)["run_id"]


def _check_recorded(cli, state_dir, env, run_id):
    shown = json.loads(cli("runs.show", run_id, "--json", env=env, check_rc=0).stdout)
    overrides = shown["overrides"][0]["overrides"]
    assert shown["overrides"][0]["attempt"] == 1
    assert overrides["environments.local.drill.scale"] == {"value": 3, "source": "--set drill.scale"}
    assert overrides["environments.prod.database.password"] == {
        "value": "<secret env:AEP_CANARY_PW>", "source": "--set environments.prod.database.password"}
    assert overrides["state_dir"]["source"] == "environment variable AEP_OPS_STATE_DIR"

    text = cli("runs.show", run_id, env=env, check_rc=0).stdout
    assert "  overrides:\n" in text
    assert "    environments.local.drill.scale: 3    # --set drill.scale\n" in text
    assert ("    environments.prod.database.password: <secret env:AEP_CANARY_PW>"
            "    # --set environments.prod.database.password\n") in text

    records = [r for r in _audit(state_dir) if r["run_id"] == run_id]
    assert records and all(r["overrides"]["environments.local.drill.scale"]["value"] == 3 for r in records)
    everything = text + json.dumps(shown) + (state_dir / "logs" / "audit.jsonl").read_text()
    assert CANARY not in everything


def test_set_overrides_are_in_runs_show_and_the_audit_log(cli, state_dir):
    env = {"AEP_CANARY_PW": CANARY}
    run_id = _run(cli, env)
    _check_recorded(cli, state_dir, env, run_id)


def test_a_run_without_overrides_says_so(cli, state_dir, monkeypatch):
    run_id = json.loads(cli("demo.greet", "--name", "Bo", "--json", check_rc=0).stdout)["run_id"]
    shown = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
    assert list(shown["overrides"][0]["overrides"]) == ["state_dir"], "only the test's own AEP_OPS_STATE_DIR"


def test_a_secret_looking_override_is_masked_even_when_not_a_reference(cli, state_dir):
    run_id = json.loads(cli("demo.greet", "--name", "Cy", "--json", "--set", "rds.cutover.secret_id=aep/app-dsn-prod",
                            check_rc=0).stdout)["run_id"]
    shown = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
    assert shown["overrides"][0]["overrides"]["environments.local.rds.cutover.secret_id"] == {
        "value": "****", "source": "--set rds.cutover.secret_id"}
    assert "aep/app-dsn-prod" not in cli("runs.show", run_id, check_rc=0).stdout + (state_dir / "journal.sqlite3"
                                                                                   ).read_bytes().decode("latin-1")
    rows = json.loads(cli("runs.show", run_id, "--json", env={"AEP_OPS_ENVIRONMENTS__LOCAL__SSH__USER": "x"},
                          check_rc=0).stdout)["overrides"]
    assert "environments.local.ssh.user" not in rows[0]["overrides"], "what a later command sets is not the run's"


def test_each_resumed_attempt_records_its_own_overrides(cli, state_dir):
    first = cli("test.refuse", "--set", "drill.scale=2", env={"AEP_OPS_PLUGINS": "tests.support.frontdoor_runbooks"})
    assert first.returncode == 2, first.stderr
    run_id = json.loads(cli("runs.list", "--json", check_rc=0).stdout)[-1]["id"]
    again = cli("test.refuse", "--resume", run_id, "--set", "drill.scale=4",
                env={"AEP_OPS_PLUGINS": "tests.support.frontdoor_runbooks"})
    assert again.returncode == 2, again.stderr
    shown = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
    assert [(a["attempt"], a["overrides"]["environments.local.drill.scale"]["value"]) for a in shown["overrides"]] \
        == [(1, 2), (2, 4)]
    text = cli("runs.show", run_id, check_rc=0).stdout
    assert "  overrides (attempt 1):\n" in text and "  overrides (attempt 2):\n" in text


@pytest.fixture
def pg_journal_env(pg_cluster, tmp_path):
    conf = tmp_path / "journal.yaml"
    conf.write_text("journal: {dsn: 'env:AEP_JOURNAL_DSN'}\n")
    return {"AEP_OPS_CONFIG": str(conf), "AEP_JOURNAL_DSN": pg_cluster.dsn, "AEP_CANARY_PW": CANARY}


def test_overrides_are_recorded_in_the_postgresql_journal(cli, state_dir, pg_cluster, pg_journal_env):
    run_id = _run(cli, pg_journal_env)
    assert not (state_dir / "journal.sqlite3").exists(), "the PostgreSQL journal is used"
    rows = pg_cluster.sql("select attempt, overrides from aep_ops.run_overrides where run_id = %s", (run_id,))
    assert len(rows) == 1 and rows[0][0] == 1 and json.loads(rows[0][1])["environments.local.drill.scale"]["value"] == 3
    _check_recorded(cli, state_dir, pg_journal_env, run_id)
