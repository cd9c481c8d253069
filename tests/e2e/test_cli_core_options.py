"""invoke's core flags on both front doors: honoured, or refused with exit 2 and what to use instead,
and never advertised when refused; aep-ops's own version; "did you mean" for a mistyped task or flag."""

from __future__ import annotations

import pytest

import aep_ops

TOOLS = ["inv", "aep-ops"]


def _one_error_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("flag", ["--dry", "-R"])
def test_invokes_dry_is_refused_with_a_pointer_and_changes_nothing(cli, state_dir, tool, where, flag):
    args = [flag, "demo.greet", "--name", "x"] if where == "before" else ["demo.greet", "--name", "x", flag]
    proc = cli(*args, tool=tool)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _one_error_line(proc)
    assert line.startswith("error: -R/--dry ") and "--dry-run" in line
    assert not (state_dir / "demo").exists(), "on main --dry was ignored and the greeting was written"
    assert cli("runs.list", "--json", check_rc=0).stdout.strip() == "[]", "nothing ran"


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("args, names", [
    (["-f", "missing.yaml", "doctor"], "AEP_OPS_CONFIG=FILE"),
    (["--config", "missing.yaml", "runs.list"], "AEP_OPS_CONFIG=FILE"),
    (["-e", "demo.greet"], "--dry-run"),
    (["--echo", "demo.greet"], "--dry-run"),
    (["-p", "demo.greet"], "-p/--pty"),
    (["-w", "demo.greet"], "--resume RUN_ID"),
    (["-T", "5", "demo.greet"], "--timeout SECONDS"),
    (["--hide=both", "demo.greet"], "--hide"),
    (["demo.greet", "--echo"], "--dry-run"),
])
def test_core_flags_aep_ops_does_not_use_are_refused(cli, state_dir, tool, args, names):
    proc = cli(*args, tool=tool)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _one_error_line(proc)
    assert line.startswith("error: ") and names in line, line
    assert not (state_dir / "demo").exists()


@pytest.mark.parametrize("tool", TOOLS)
def test_help_lists_only_the_core_flags_that_are_honoured(cli, tool):
    text = cli("--help", tool=tool, check_rc=0).stdout
    core = text.split("Core options:", 1)[1].split("Subcommands:", 1)[0]
    for refused in ("--dry", "--echo", "--config", "--pty", "--warn-only", "--command-timeout", "--hide",
                    "--prompt-for-sudo-password", "--write-pyc"):
        assert refused not in core, (refused, core)
    for honoured in ("--list", "--help", "--version", "--complete", "--list-format"):
        assert honoured in core


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_is_aep_ops_version(cli, tool, flag):
    out = cli(flag, tool=tool, check_rc=0).stdout.strip()
    assert out.startswith(f"aep-ops {aep_ops.__version__} (invoke "), out


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("args", [["dr.drll"], ["--help", "dr.drll"], ["dr.drll", "--help"]])
def test_a_mistyped_task_is_one_line_with_the_nearest_task(cli, tool, args):
    proc = cli(*args, tool=tool)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    line = _one_error_line(proc)
    assert line.startswith("error: no task 'dr.drll'; did you mean dr.drill?"), line


@pytest.mark.parametrize("tool", TOOLS)
def test_a_mistyped_flag_names_the_nearest_flag(cli, state_dir, tool):
    proc = cli("demo.greet", "--nmae", "x", tool=tool)
    assert proc.returncode == 2
    assert _one_error_line(proc).startswith("error: demo.greet: unknown flag --nmae; did you mean --name?")
    assert not (state_dir / "demo").exists()


@pytest.mark.parametrize("tool", TOOLS)
def test_honoured_core_flags_still_work(cli, tool):
    listing = cli("--list", "--list-format", "json", tool=tool, check_rc=0).stdout
    assert '"name": "demo"' in listing or "demo" in listing
    assert "demo.greet" in cli("--list", tool=tool, check_rc=0).stdout
    assert "Docstring:" in cli("--help", "demo.greet", tool=tool, check_rc=0).stdout
