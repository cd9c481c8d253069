"""The CLI as a user runs it: namespace, help, exit codes, one-line errors, config.show, runs."""

from __future__ import annotations

import json
import re

import pytest


def task_names(listing: str) -> list[str]:
    return sorted(m.group(1) for m in re.finditer(r"^  (\S+)", listing, re.M))


def test_aep_ops_exposes_the_same_namespace_as_inv(cli, tmp_path):
    inv = cli("--list", check_rc=0)
    console = cli("--list", tool="aep-ops", check_rc=0)
    assert task_names(inv.stdout) == task_names(console.stdout)
    assert {"doctor", "demo.greet", "config.show", "runbooks.check", "runs.list", "runs.show"} <= set(
        task_names(inv.stdout))
    help_ = cli("--help", tool="aep-ops", check_rc=0)
    assert "aep-ops" in help_.stdout


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
@pytest.mark.parametrize("args", [["--list"], ["dr.drill", "--help"], ["--help", "runs.show"]])
def test_listing_and_help_piped_into_head_end_quietly(tool, args, isolated):
    """`inv --list | head -3` at 3 a.m.: no BrokenPipe traceback after the lines wanted."""
    import os
    import signal
    import subprocess

    from tests.conftest import BIN, REPO

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write, as when head has its lines
    try:
        proc = subprocess.run([str(BIN / tool), *args], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=30)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, -signal.SIGPIPE)


def test_a_plain_task_starts_without_the_runbook_modules_and_two_tasks_still_parse(cli, state_dir):
    import subprocess
    import sys

    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('RUNBOOK MODULES', sorted(m for m in sys.modules"
             " if m in ('aep_ops.dr.runbooks', 'aep_ops.pitr.runbooks', 'aep_ops.patch.runbooks', 'aep_ops.backup.runbooks'))))\n"
             "sys.argv = ['aep-ops'] + sys.argv[1:]\n"
             "from aep_ops.tasks.program import main\n"
             "main()\n")
    plain = subprocess.run([sys.executable, "-c", probe, "runs.list"], capture_output=True, text=True)
    assert plain.returncode == 0 and "RUNBOOK MODULES []" in plain.stdout, plain.stdout + plain.stderr
    runbook = subprocess.run([sys.executable, "-c", probe, "dr.drill", "--help"], capture_output=True, text=True)
    assert runbook.returncode == 0 and "'aep_ops.dr.runbooks'" in runbook.stdout and "--read-only-source" in runbook.stdout

    both = cli("runs.list", "config.show", tool="aep-ops", check_rc=0)  # the second task is not in runs
    assert "state_dir:" in both.stdout
    assert "error: no task 'runs.nope'" in cli("runs.nope", tool="aep-ops", check_rc=2).stderr


def test_help_works_for_every_task_through_both_front_doors(cli):
    """Also for tasks with a positional argument (runs.show RUN_ID), where invoke's parser would
    take '--help' as the argument's value."""
    names = task_names(cli("--list", tool="aep-ops", check_rc=0).stdout)
    assert len(names) >= 25
    for name in names:
        for tool in ("aep-ops", "inv"):
            proc = cli(name, "--help", tool=tool)
            assert proc.returncode == 0 and f"] {name} [" in proc.stdout and "Docstring:" in proc.stdout, (tool, name)
    assert "Docstring:" in cli("patch.abandon", "-h", tool="aep-ops", check_rc=0).stdout


@pytest.mark.parametrize("args, code, message", [
    (["demo.greet", "--env", "qa"], 2, "error: unknown environment 'qa'"),
    (["demo.greet", "--name", " "], 2, "error: --name must be a non-empty single line"),
    (["demo.greet", "--set", "log.levl=debug"], 2, "error: --set log.levl: unknown key 'log.levl'"),
    (["demo.greet", "--resume", "20200101T000000Z-000000"], 2, "no such run in the journal"),
    (["demo.greet", "--no-such-flag"], 2, "error: demo.greet: unknown flag --no-such-flag"),
    (["runs.show"], 2, "did not receive required positional arguments: 'run_id'"),
])
@pytest.mark.parametrize("tool", ["aep-ops", "inv"])
def test_bad_input_is_one_line_and_exit_2(cli, state_dir, args, code, message, tool):
    proc = cli(*args, tool=tool)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (state_dir / "demo").exists(), "nothing is changed on bad input"


def test_invalid_config_file_exits_2_naming_key_and_file(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("environments:\n  prod:\n    ssh: {connect_timeout: soon}\n")
    proc = cli("config.show", env={"AEP_OPS_CONFIG": str(bad)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {bad}: 'environments.prod.ssh.connect_timeout' must be an integer,"
                                   " got a string 'soon'")


def test_config_show_masks_secrets_and_names_sources(cli, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("environments:\n  prod:\n    database: {host: db.internal, password: 'env:AEP_DB_PW'}\n")
    env = {"AEP_OPS_CONFIG": str(conf), "AEP_DB_PW": "canary-0f3a9d1e"}
    text = cli("config.show", "--env", "prod", env=env, check_rc=0).stdout
    assert "password: <secret env:AEP_DB_PW>" in text
    assert f"host: db.internal    # {conf}" in text
    data = json.loads(cli("config.show", "--env", "prod", "--json", env=env, check_rc=0).stdout)
    assert data["config"]["environment"]["database"]["password"] == "<secret env:AEP_DB_PW>"
    assert "canary-0f3a9d1e" not in text + json.dumps(data)


def test_dry_run_prints_the_plan_and_changes_nothing(cli, state_dir):
    proc = cli("demo.greet", "--name", "Ada", "--dry-run", check_rc=0)
    assert "1. Ensure the demo directory exists: would change: create" in proc.stdout
    assert "3. Record the greeting's checksum: unknown until an earlier step runs" in proc.stdout
    assert not (state_dir / "demo").exists()


def test_runs_are_listed_and_shown(cli):
    first = cli("demo.greet", "--name", "Ada", "--json", check_rc=0)
    run_id = json.loads(first.stdout)["run_id"]
    cli("demo.greet", "--name", "Ada", check_rc=0)
    listing = cli("runs.list", "--runbook", "demo.greet", check_rc=0).stdout.splitlines()
    assert len(listing) == 3 and listing[0].split()[:3] == ["run", "runbook", "env"]  # a header, oldest first
    assert listing[1].startswith(run_id)
    shown = json.loads(cli("runs.show", run_id, "--json", check_rc=0).stdout)
    assert shown["run"]["status"] == "succeeded"
    assert [s["status"] for s in shown["steps"]] == ["changed"] * 3
    assert cli("runs.show", "nope").returncode == 2


def test_runbooks_list_show_check(cli):
    assert "demo.greet" in cli("runbooks.list", check_rc=0).stdout
    assert "## 2. Write the greeting `ensure_greeting`" in cli("runbooks.show", "demo.greet", check_rc=0).stdout
    assert "code, Markdown and layout agree" in cli("runbooks.check", check_rc=0).stdout
    assert cli("runbooks.show", "no.such").returncode == 2


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
@pytest.mark.parametrize("task", ["pitr.discard", "pitr.cutover", "fleet.trust"])
def test_resume_needs_no_positional_argument(cli, tool, task):
    """A resumed run takes its parameters from the journal: `TASK --resume RUN` is enough, as the
    hint at the end of a failed run says (invoke alone would demand the positional argument)."""
    proc = cli(task, "--resume", "20261201T000000Z-000000", tool=tool)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == ("error: --resume 20261201T000000Z-000000: no such run in the"
                                                    " journal (see `inv runs.list`)")
