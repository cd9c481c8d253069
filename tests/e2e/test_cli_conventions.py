"""One rule for each convention, on every task: long flags only; --json is JSON on stdout and
--json-file PATH a file; read-only runbooks offer no --dry-run/--resume/--yes; listings have a header,
oldest first; refusals are journaled as refused, not failed; texts of several lines never break a
column; values are shown as YAML."""

from __future__ import annotations

import json
import re

import pytest

PLUGIN = {"AEP_OPS_PLUGINS": "tests.support.frontdoor_runbooks"}


def _tasks(cli):
    return sorted(m.group(1) for m in re.finditer(r"^  (\S+)", cli("--list", tool="aep-ops", check_rc=0).stdout, re.M))


def test_no_task_has_a_short_flag(cli):
    for name in _tasks(cli):
        options = cli(name, "--help", tool="aep-ops", check_rc=0).stdout.split("Options:", 1)[1]
        assert not re.search(r"^\s+-[A-Za-z]\b", options, re.M), (name, options)


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
@pytest.mark.parametrize("args", [["runs.list", "-r", "demo.greet"], ["patch.status", "-r", "x"],
                                  ["runs.list", "-l", "5"]])
def test_a_short_flag_is_refused(cli, tool, args):
    """Not taken as something else: inv's own -r (--search-root) and -l (--list) after a task."""
    proc = cli(*args, tool=tool)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stdout == "", (proc.stdout, proc.stderr)


def test_json_is_stdout_and_json_file_a_file(cli, state_dir, tmp_path):
    out = tmp_path / "run.json"
    text = cli("demo.greet", "--name", "x", "--json-file", str(out), check_rc=0)
    assert "result: succeeded" in text.stdout or "succeeded" in text.stdout
    assert json.loads(out.read_text())["status"] == "succeeded"
    both = cli("demo.greet", "--name", "x", "--json", "--json-file", str(out), check_rc=0)
    assert json.loads(both.stdout)["run_id"] == json.loads(out.read_text())["run_id"]
    legacy = tmp_path / "legacy.json"  # the old `--json PATH` is gone: --json takes no value anywhere
    proc = cli("demo.greet", "--name", "x", "--json", str(legacy), check_rc=2)
    assert proc.stderr.strip() == ("error: demo.greet: --json takes no value (JSON goes to stdout);"
                                   f" to write it to a file use --json-file {legacy}")
    assert not legacy.exists()


def test_json_file_is_checked_before_the_first_step(cli, state_dir, tmp_path):
    proc = cli("demo.greet", "--name", "x", "--json-file", str(tmp_path / "missing" / "o.json"))
    assert proc.returncode == 2 and "--json-file" in proc.stderr and "does not exist" in proc.stderr
    assert not (state_dir / "demo").exists()


@pytest.mark.parametrize("tool", ["inv", "aep-ops"])
def test_json_with_a_value_on_a_plain_task_says_how_to_write_a_file(cli, tool):
    proc = cli("runs.list", "--json", "out.json", tool=tool)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: runs.list: --json takes no value (JSON goes to stdout);"
                                   " to write it to a file redirect stdout (> out.json)")


def test_a_read_only_runbook_offers_no_dry_run_resume_or_yes(cli):
    options = cli("doctor", "--help", tool="aep-ops", check_rc=0).stdout.split("Options:", 1)[1]
    for flag in ("--dry-run", "--resume", "--yes"):
        assert flag not in options
    for flag in ("--env", "--json", "--set"):
        assert flag in options
    for flag in ("--yes", "--resume"):
        proc = cli("doctor", flag, *(["20261201T000000Z-000000"] if flag == "--resume" else []))
        assert proc.returncode == 2 and f"unknown flag {flag}" in proc.stderr, proc.stderr
    assert "--resume" in cli("demo.greet", "--help", check_rc=0).stdout, "a runbook that changes things keeps them"


def test_runs_list_has_a_header_and_lists_oldest_first(cli):
    ids = [json.loads(cli("demo.greet", "--name", n, "--json", check_rc=0).stdout)["run_id"] for n in "abc"]
    lines = cli("runs.list", check_rc=0).stdout.splitlines()
    assert lines[0].split()[:5] == ["run", "runbook", "env", "status", "started"]
    assert [line.split()[0] for line in lines[1:]] == ids, "oldest first, the newest at the bottom"
    assert [r["id"] for r in json.loads(cli("runs.list", "--json", check_rc=0).stdout)] == ids
    assert [line.split()[0] for line in cli("runs.list", "--limit", "2", check_rc=0).stdout.splitlines()[1:]] \
        == ids[1:], "--limit keeps the newest"


def test_a_refusal_is_journaled_as_refused_not_failed(cli):
    proc = cli("test.refuse", env=PLUGIN)
    assert proc.returncode == 2 and "--target: no such target here" in proc.stderr, proc.stderr
    runs = json.loads(cli("runs.list", "--json", check_rc=0).stdout)
    assert [r["status"] for r in runs] == ["refused"]
    assert " refused " in cli("runs.list", check_rc=0).stdout.splitlines()[1]
    failing = cli("test.multiline", env=PLUGIN)
    assert failing.returncode == 1
    assert [r["status"] for r in json.loads(cli("runs.list", "--json", check_rc=0).stdout)] == ["refused", "failed"]


def test_a_many_line_error_or_plan_does_not_break_the_columns(cli):
    assert cli("test.multiline", env=PLUGIN).returncode == 1
    run = json.loads(cli("runs.list", "--json", check_rc=0).stdout)[0]
    shown = cli("runs.show", run["id"], check_rc=0).stdout.splitlines()
    assert all(line.startswith(("run ", "  ")) for line in shown), shown
    step = next(i for i, line in enumerate(shown) if line.startswith("  1. fail_many_lines"))
    assert shown[step].endswith(" connect as app")
    assert shown[step + 1].strip() == "then read the catalog" and shown[step + 1].startswith(" " * 10)
    error = shown[step + 2]
    assert error.strip() == "error: step fail_many_lines: could not connect as app" or \
        error.strip() == "error: could not connect as app", shown
    column = error.index("error: ") + len("error: ")
    assert shown[step + 3] == " " * column + 'DETAIL: role "app" does not exist'
    assert shown[step + 4] == " " * column + "HINT: create the role first"
    listing = cli("runs.list", check_rc=0).stdout.splitlines()
    assert len(listing) == 2, listing  # the header and the run: one line
    assert listing[1].startswith(run["id"]) and listing[1].endswith("could not connect as app (+2 lines)")


def test_config_show_and_runs_show_speak_yaml(cli):
    text = cli("config.show", check_rc=0).stdout
    assert "  dsn: null    # built-in defaults" in text and "plugins: []    # built-in defaults" in text
    assert re.search(r"^  production: false    # ", text, re.M)
    assert "environments_configured: [dev, local, prod, staging]" in text
    assert not re.search(r": (None|True|False|\[')", text), text
    run_id = json.loads(cli("demo.greet", "--name", "Ada", "--json", check_rc=0).stdout)["run_id"]
    shown = cli("runs.show", run_id, check_rc=0).stdout
    assert "  params:\n    name: Ada\n    pause: 0\n" in shown
