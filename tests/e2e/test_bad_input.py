"""Bad configuration and numeric input through the CLI (issue 8 items 9, 10, 11, 12): exit 2, one
line on stderr, no traceback, and nothing created in the directory the command was started from."""

from __future__ import annotations

import json
import os
import resource
import subprocess

import pytest

from tests.conftest import BIN, REPO

MEMORY_LIMIT = 512 << 20  # a normal `aep-ops config.show` fits easily; an expanded alias bomb does not


@pytest.fixture
def state(tmp_path):
    """The subprocesses' state dir; not created by the test process (as the autouse one is)."""
    return tmp_path / "aep-state"


@pytest.fixture
def run(tmp_path, state):
    """Run a console script from an empty working directory, as a user in their home would."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    def go(*args: str, tool: str = "aep-ops", env: dict | None = None, limit_memory: bool = False):
        search = ["--search-root", str(REPO)] if tool == "inv" else []
        proc = subprocess.run(
            [str(BIN / tool), *search, *args], cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(REPO), "AEP_OPS_STATE_DIR": str(state), **(env or {})},
            capture_output=True, text=True, timeout=120,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT)))
            if limit_memory else None)
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        assert sorted(os.listdir(cwd)) == [], "nothing is created where the command was started"
        return proc

    return go


def refused(proc, message: str) -> str:
    """Exit 2 with exactly one line on stderr that contains ``message``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, (proc.returncode, proc.stderr[-2000:])
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "internal error" not in lines[0]
    return lines[0]


@pytest.mark.parametrize("tool", ["aep-ops", "inv"])
@pytest.mark.parametrize("args, env, message", [
    (["--set", "state_dir="], {}, "--set state_dir: 'state_dir' is empty"),
    (["--set", "state_dir=[1"], {}, "--set state_dir: 'state_dir' is '[1'; a path must be absolute"),
    (["--set", "state_dir=logs"], {}, "a path must be absolute"),
    (["--set", "state_dir=~nouser-8f2c/x"], {}, "no user 'nouser-8f2c' on this machine"),
    ([], {"AEP_OPS_STATE_DIR": ""}, "environment variable AEP_OPS_STATE_DIR: 'state_dir' is empty"),
    ([], {"AEP_OPS_STATE_DIR": "state"}, "environment variable AEP_OPS_STATE_DIR: 'state_dir' is 'state'"),
    ([], {"AEP_OPS_ENVIRONMENTS__PROD__SSH__IDENTITY": "id_ed25519"},
     "'environments.prod.ssh.identity' is 'id_ed25519'; a path must be absolute"),
    (["--env", "a b"], {}, "--env 'a b': an environment name is 1-63 letters"),
    (["--env=../prod"], {}, "--env '../prod': an environment name"),
    (["--set", "environments.local.drill.scale=1000000"], {},
     "'environments.local.drill.scale' is 1000000; expected a whole number from 1 to 1000"),
    (["--set", "environments.prod.database.password=hunter2hunter2"], {}, "must be a secret reference"),
])
def test_bad_configuration_is_one_line_and_creates_nothing(run, state, tool, args, env, message):
    line = refused(run("config.show", *args, tool=tool, env=env), message)
    assert "hunter2" not in line
    assert not state.exists(), "a refused configuration writes no logs or journal"


@pytest.mark.parametrize("tool", ["aep-ops", "inv"])
@pytest.mark.parametrize("limit", ["abc", "99999999999999999999999", "0", "-1", "1.5", "nan"])
def test_runs_list_limit_is_a_bounded_whole_number(run, tool, limit):
    refused(run("runs.list", "--limit", limit, tool=tool), f"--limit {limit}: expected a whole number from 1 to 10000")


def test_runs_list_limit_in_range_still_lists(run):
    assert run("demo.greet").returncode == 0
    proc = run("runs.list", "--limit", "1")
    assert proc.returncode == 0 and "demo.greet" in proc.stdout and len(proc.stdout.splitlines()) == 2  # header + 1


@pytest.mark.parametrize("runbook", ["dr.drill", "db.setup"])
def test_a_billion_row_seed_from_the_configuration_is_refused_before_planning(run, runbook):
    refused(run(runbook, "--dry-run", "--set", "environments.local.drill.scale=1000000"),
            "--set environments.local.drill.scale: 'environments.local.drill.scale' is 1000000")


def billion_laughs(use: str) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines + [use]) + "\n"


@pytest.mark.parametrize("use", ["log: {level: *a9}", "plugins: *a9"])
def test_an_alias_bomb_is_refused_in_one_short_line_within_a_modest_memory_limit(run, tmp_path, use):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs(use))
    assert bomb.stat().st_size < 600
    line = refused(run("config.show", env={"AEP_OPS_CONFIG": str(bomb)}, limit_memory=True),
                   f"{bomb}: refused: its YAML aliases expand to more than 100000 values")
    assert len(line) < 300


def test_a_config_file_that_is_not_utf8_or_too_big_is_refused(run, tmp_path):
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("environments: {prod: {description: caf\xe9}}\n".encode("latin-1"))
    refused(run("config.show", env={"AEP_OPS_CONFIG": str(latin)}), f"{latin}: not UTF-8 text (byte 0xe9")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 110_000)
    refused(run("config.show", env={"AEP_OPS_CONFIG": str(big)}), "larger than the 1 MiB a configuration file may have")


@pytest.fixture
def damaged_restores(state):
    """Two copies with a damaged restore.json and one good one, as a crash or a hand edit leaves them."""
    root = state / "pg" / "restores"
    for name, text in [("broken", '{"port": 5'), ("partial", '{"status": "restoring"}'),
                       ("good", json.dumps({"name": "good", "port": 55999, "status": "promoted", "purpose": "pitr",
                                            "dsn": "host=/x port=55999 dbname=aep", "target_time": "t0"}))]:
        (root / name).mkdir(parents=True)
        (root / name / "restore.json").write_text(text)
    return root


def test_pitr_list_shows_a_damaged_record_as_unreadable_and_carries_on(run, damaged_restores):
    proc = run("pitr.list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"unreadable: {damaged_restores / 'broken' / 'restore.json'}: not valid JSON (")
    assert any(line.startswith("good ") and "port 55999" in line for line in lines), lines
    assert f"unreadable: {damaged_restores / 'partial' / 'restore.json'}: no valid 'port'" in proc.stdout


@pytest.mark.parametrize("name", ["broken", "partial"])
def test_pitr_discard_of_a_damaged_record_says_how_to_remove_it_by_hand(run, damaged_restores, name):
    proc = run("pitr.discard", name)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and last.startswith(f"error: {damaged_restores / name / 'restore.json'}: "), proc.stderr
    assert f"rm -rf {damaged_restores / name}" in last and "internal error" not in proc.stderr
    assert (damaged_restores / name / "restore.json").exists(), "nothing is removed on a guess"


@pytest.mark.parametrize("args, message", [
    (["backup.check", "--timeout", "nan"], "--timeout nan: expected a whole number"),
    (["backup.check", "--timeout", "1e309"], "--timeout 1e309: expected a whole number"),
    (["backup.check", "--timeout", "-1"], "--timeout"),
    (["backup.check", "--timeout", "0"], "--timeout"),
    (["demo.greet", "--pause", "abc"], "--pause abc: expected a whole number"),
    (["db.setup", "--dry-run", "--scale", "-3"], "--scale"),
    (["db.setup", "--dry-run", "--scale", "1000000"], "--scale"),
])
def test_a_runbook_number_out_of_range_is_refused_before_the_run(run, args, message):
    refused(run(*args), message)


@pytest.mark.parametrize("scale", ["1000000", "-3"])
def test_dr_drill_scale_is_bounded_by_the_runbooks_declared_range(run, scale):
    refused(run("dr.drill", "--dry-run", "--scale", scale), f"--scale {scale}: expected a whole number from 0 to 1000")
