"""The text people read: durations in human units, one line of a many-line error, Markdown cells
that hold, and a check that found nothing wrong reading "passed"."""

from __future__ import annotations

import re

import pytest

from aep_ops.base import textfmt
from aep_ops.engine.runbook import load_all
from aep_ops.engine.runner import RunResult, StepOutcome
from aep_ops.tasks.adapter import outcome_line, render_result

PG_ERROR = "x\nDETAIL:  a\nb\nHINT:  c | d\nCONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE"


@pytest.mark.parametrize("seconds, shown", [
    (None, "n/a"), (0, "0.0 s"), (0.04, "0.0 s"), (1.24, "1.2 s"), (9.94, "9.9 s"), (9.96, "10 s"),
    (12.4, "12 s"), (59.4, "59 s"), (59.6, "1 min"), (60, "1 min"), (90, "1 min 30 s"), (900, "15 min"),
    (899.7, "15 min"), (3599.7, "1 h"), (3600, "1 h"), (7500, "2 h 5 min"), (14400.0, "4 h"),
    (14460, "4 h 1 min"), (90000, "1 d 1 h"), (-3, "-3.0 s"), (float("nan"), "n/a"),
])
def test_duration_in_human_units(seconds, shown):
    assert textfmt.duration(seconds) == shown


def test_one_line_keeps_the_first_line_and_counts_the_rest():
    assert textfmt.one_line(PG_ERROR) == "x (+4 lines)"
    assert textfmt.one_line("only\n\n") == "only"
    assert textfmt.one_line("a\nb") == "a (+1 line)"
    assert textfmt.one_line(None) == ""
    cut = textfmt.one_line("y" * 200 + "\nmore", limit=40)
    assert len(cut) == 40 and cut.endswith("... (+1 line)")


def test_flat_keeps_every_line_on_one():
    assert textfmt.flat(PG_ERROR).startswith("x / DETAIL:  a / b / HINT:  c | d / CONTEXT:")
    assert "\n" not in textfmt.flat(PG_ERROR)


def test_table_cell_cannot_break_a_row():
    cell = textfmt.table_cell(PG_ERROR + "\nwrite reports/<run>.md & a\\|b")
    assert "\n" not in cell and cell.count("<br>") == 5
    assert "c \\| d" in cell and "&lt;run&gt;" in cell and "&amp;" in cell
    assert "a\\\\\\|b" in cell, "a backslash before a pipe cannot un-escape it"
    row = f"| check | failed | {cell} |"
    delimiters = re.findall(r"(?<!\\)(?:\\\\)*\|", row)  # a pipe after an even number of backslashes
    assert len(delimiters) == 4, "three cells: the pipes inside the error are all escaped"


def _result(status, steps, runbook="backup.check", error=None):
    return RunResult(runbook=runbook, env="local", status=status, run_id="R1", steps=steps, error=error)


def test_a_passed_check_reads_passed_not_unchanged(capsys):
    load_all()
    steps = [StepOutcome(1, "archiver_status", "Archiver reports no failure", "unchanged", "0 failure(s) ever"),
             StepOutcome(2, "archive_roundtrip", "Force a WAL switch", "changed", "switched")]
    render_result(_result("succeeded", steps), None)
    out = capsys.readouterr().out
    assert "  1. Archiver reports no failure: passed - 0 failure(s) ever\n" in out
    assert "unchanged" not in out and "[archiver_status]" not in out


def test_a_failed_step_error_is_whole_and_indented(capsys):
    steps = [StepOutcome(1, "ensure_demo_dir", "Ensure the demo directory exists", "failed", error=PG_ERROR)]
    render_result(_result("failed", steps, runbook="demo.greet", error=f"step ensure_demo_dir: {PG_ERROR}"), None)
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "  1. Ensure the demo directory exists: failed - x"
    assert out[2:7] == ["      DETAIL:  a", "      b", "      HINT:  c | d",
                        "      CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE", "result: failed"]


def test_the_outcome_line_never_repeats_the_error():
    steps = [StepOutcome(1, "ensure_demo_dir", "Ensure the demo directory exists", "failed", error=PG_ERROR)]
    line = outcome_line(_result("failed", steps, runbook="demo.greet", error=PG_ERROR))
    assert line == "demo.greet: failed at step 1 (ensure_demo_dir); resume with --resume R1"
    soft = [StepOutcome(4, "check_smoke_queries", "Smoke queries answer", "failed", error=PG_ERROR)]
    line = outcome_line(_result("verification_failed", soft, runbook="dr.drill", error=PG_ERROR))
    assert line == "dr.drill: verification failed (check_smoke_queries) in run R1"
    lost = _result("failed", [], runbook="demo.greet", error="lock lost\nby host b")
    assert outcome_line(lost) == "demo.greet: failed: lock lost / by host b; resume with --resume R1"
