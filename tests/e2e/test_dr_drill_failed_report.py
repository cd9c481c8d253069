"""A drill whose smoke query fails with a many-line PostgreSQL error (DETAIL, HINT, CONTEXT), as the
on-call engineer sees it on a terminal and as a timer sees it off one; real PostgreSQL and pgBackRest."""

from __future__ import annotations

import json
import re

import psycopg

from tests.conftest import write_config
from tests.support.markdown_tables import tables
from tests.support.pty_run import run_on_tty

FAILING = ("do $$ begin raise exception 'smoke-boom' using detail = E'detail-one\\ndetail-two',"
           " hint = 'hint-three'; end $$")
# The config file holds the query in a single-quoted YAML scalar: `\n` reaches PostgreSQL as written
# (E'' makes it a line break in the DETAIL), the YAML quote doubled.
CONFIG = ("environments:\n  local:\n    drill:\n      smoke_queries:\n"
          "        - 'select count(*) from users'\n"
          f"        - '{FAILING.replace(chr(39), chr(39) * 2)}'\n")
MESSAGE = ": smoke-boom"  # the query's one line, then PostgreSQL's message: the error's first line


def number(cell: str) -> float:
    return float(cell.strip().split()[0])


def test_failed_drill_on_a_terminal(cli, local_env, monkeypatch, tmp_path):
    write_config(tmp_path / "aep-ops.yaml", CONFIG, monkeypatch)
    tty = run_on_tty("dr.drill")
    assert tty.returncode == 5, tty.text[-3000:]
    shown = tty.text

    # The error, said once on the terminal: not as a log line, a progress line, the result and the last line.
    assert shown.count(MESSAGE) == 1, shown
    assert "step.failed" not in shown and "Traceback" not in shown
    last = tty.lines[-1]
    assert last.startswith("dr.drill: verification failed (check_smoke_queries) in run ") and "boom" not in last

    # The summary: one line per check, each objective beside its own measure, in human units.
    summary = shown[shown.index("dr.drill on local, run "):]
    check_lines = [ln for ln in summary.splitlines() if re.match(r"  (passed|failed|skipped) ", ln)]
    assert [ln.split()[1] for ln in check_lines] == ["check_markers", "check_row_counts", "check_smoke_queries",
                                                     "check_amcheck", "check_writable", "measure"]
    failed = [ln for ln in check_lines if ln.startswith("  failed")]
    assert len(failed) == 1 and MESSAGE in failed[0] and failed[0].endswith("(+4 lines in the report)")  # DETAIL x2, HINT, CONTEXT
    assert re.search(r"  RTO \d+\.\d s \(objective 4 h\), RPO \d+\.\d s \(objective 15 min\),"
                     r" archive lag at start \d", summary), summary

    # Progress lines fit a 100-column terminal (the runbook anchor is no longer on them).
    for line in shown.splitlines():
        if re.match(r"\[\d+/15\] |      -> ", line):
            assert len(line) <= 100, line
    assert "-> passed: 7 tables match" in shown and "-> unchanged: 7 tables match" not in shown

    # The kept copy ends the summary: its DSN (that answers) and the exact command that removes it.
    report_path = re.search(r"  report: (\S+\.md)", summary).group(1)
    report = json.loads(open(report_path.replace(".md", ".json")).read())
    kept = report["kept"]
    name = report["restored_name"]
    assert kept["name"] == name and kept["discard_command"] == f"inv pitr.discard --env local {name}"
    assert tty.lines[-3:-1] == [f"  dsn: {kept['dsn']}", f"  remove it with: inv pitr.discard --env local {name}"]
    with psycopg.connect(kept["dsn"], connect_timeout=5) as conn:
        assert conn.execute("select count(*) from drill_markers").fetchone()[0] >= 1

    # The Markdown report: every table keeps its columns; the error is whole, in one cell.
    md = open(report_path).read()
    found = tables(md)
    for heading, rows in found.items():
        assert {len(r) for r in rows} == {len(rows[0])}, (heading, rows)
    checks = found["Checks"]
    assert [r[0].strip() for r in checks[2:]] == [c["id"] for c in report["checks"]]
    smoke = next(r for r in checks if r[0].strip() == "check_smoke_queries")
    assert smoke[1].strip() == "failed"
    for part in ("smoke-boom", "DETAIL:  detail-one<br>detail-two", "HINT:  hint-three", "CONTEXT:"):
        assert part in smoke[2], smoke
    measures = {r[0].strip(): r for r in found["measure"][2:]}
    assert measures["RTO (restore start to verified, writable)"][2].strip() == "4 h"
    assert measures["Archive lag at drill start"][2].strip() == "15 min (the RPO objective)"
    assert md.rstrip().endswith(f"Remove it when done: `inv pitr.discard --env local {name}`")
    assert f"Connect with `{kept['dsn']}`" in md

    # The restore step's parts add up to it, in the JSON and as the report prints them.
    parts, phases = report["restore_parts_seconds"], report["phases_seconds"]
    assert set(parts) == {"files", "replay_and_promote", "step_overhead"} and all(v >= 0 for v in parts.values())
    assert round(sum(parts.values()), 3) == phases["restore"] > 0
    assert parts["files"] == report["restore_seconds"], "the same figure, the same rounding, everywhere"
    timing = found["Timings per phase"]
    restore_row = next(i for i, r in enumerate(timing) if r[0].strip() == "restore")
    shown_parts = [r for r in timing[restore_row + 1:] if r[0].strip().startswith("- ")]
    assert len(shown_parts) == 3
    assert round(sum(number(r[2]) for r in shown_parts), 3) == number(timing[restore_row][2])
    assert not any("recovery (restore + replay + promote)" in r[0] for r in timing)
    rto = report["rto_parts_seconds"]
    assert round(sum(rto.values()), 3) == report["rto_seconds"]

    # The printed command does what it says.
    cli(*kept["discard_command"].split()[1:], check_rc=0)
    assert name not in cli("pitr.list", check_rc=0).stdout


def test_failed_drill_off_a_terminal(cli, local_env, monkeypatch, tmp_path):
    """What a timer sees: stdout the summary, stderr JSON lines (the error whole, in one event) and
    then one plain line, the outcome, that does not repeat the error."""
    write_config(tmp_path / "aep-ops.yaml", CONFIG, monkeypatch)
    proc = cli("dr.drill", timeout=300)
    assert proc.returncode == 5, proc.stderr[-3000:]
    err = proc.stderr.splitlines()
    events = [json.loads(line) for line in err[:-1]]  # every line but the last is a JSON event
    assert err[-1].startswith("dr.drill: verification failed (check_smoke_queries) in run ")
    assert "smoke-boom" not in err[-1]
    failures = [e for e in events if e["event"] == "step.failed"]
    assert len(failures) == 1 and failures[0]["step"] == "check_smoke_queries"
    assert "DETAIL:  detail-one\ndetail-two" in failures[0]["error"] and "HINT:  hint-three" in failures[0]["error"]
    checks = [ln for ln in proc.stdout.splitlines() if re.match(r"  (passed|failed|skipped) ", ln)]
    assert len(checks) == 6 and proc.stdout.count(MESSAGE) == 1
    assert "(objective 4 h)" in proc.stdout and "14400" not in proc.stdout
