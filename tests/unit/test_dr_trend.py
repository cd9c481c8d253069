"""The drill trend chart as a reviewer reads it: a real time axis, objectives at the configured
values, failures marked, missing values absent (never 0), PNG + SVG written atomically.

The drills here are report files and real journal runs written into a fresh state directory;
the chart is read back from the SVG matplotlib wrote (and, for exact data values, from the
figure it drew), the PNG's size from its header.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import socket
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import BIN, REPO

SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"
MONTHS = {datetime(2000, m, 1).strftime("%b") for m in range(1, 13)}
NOW = datetime.now(timezone.utc).replace(microsecond=0)
SERIAL = itertools.count(1)


@pytest.fixture
def settings(state_dir):
    from aep_ops import config

    return config.load("local")


def report(settings, at, *, result="passed", rto=1800.0, size=200 * 2**30, rate=150 * 2**20, lag=20.0):
    """A drill report as run_report writes it (the fields the chart reads)."""
    run_id = at.strftime("%Y%m%dT%H%M%SZ") + "-" + format(next(SERIAL), "06x")
    data = {"runbook": "dr.drill", "run_id": run_id, "env": settings.env_name, "finished_at": at.isoformat(),
            "result": result, "rto_seconds": rto, "rpo_seconds": 0.0, "archive_lag_seconds": lag,
            "rto_objective_seconds": 14400, "rpo_objective_seconds": 900, "database_bytes": size,
            "restore_seconds": size / rate if size and rate else None, "restore_bytes_per_second": rate,
            "checks": [], "phases_seconds": {}}
    directory = settings.state_dir / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"dr-drill-{run_id}.json").write_text(json.dumps(data))
    return data


def failed_run_in_journal(settings):
    """A dr.drill run that failed before its report, recorded by the real journal (now)."""
    from aep_ops.engine import journal as jr

    journal = jr.Journal.open(settings)
    run_id = journal.start_run("dr.drill", settings.env_name, {}, actor="test", host=socket.gethostname())
    journal.finish_run(run_id, jr.RUN_FAILED, "step ensure_scratch_restored: no backup covers the target")
    journal.close()
    return run_id


def draw(settings):
    from aep_ops.dr import trend

    paths = trend.write_chart(settings)
    reports = trend.history(settings)
    fig = trend.figure(trend.drills(settings, reports), env=settings.env_name,
                       objectives=trend.objectives(settings, reports))
    fig.canvas.draw()
    return paths, ET.parse(paths["svg"]).getroot(), fig


def group(root, gid):
    found = [g for g in root.iter(f"{SVG}g") if g.get("id") == gid]
    assert len(found) <= 1
    return found[0] if found else None


def marker_xy(root, gid):
    g = group(root, gid)
    return [] if g is None else [(float(u.get("x")), float(u.get("y"))) for u in g.iter(f"{SVG}use")]


def texts(root):
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def panel(fig, key):
    ax = next(a for a in fig.axes if any(line.get_gid() == f"{key}-line" for line in a.get_lines()))
    lines = {line.get_gid(): line for line in ax.get_lines()}
    return ax, lines


def unit_factor(ax):
    unit = re.search(r"\(([^)]+)\)$", ax.get_ylabel()).group(1)
    return {"s": 1, "min": 60, "h": 3600, "MiB/s": 2**20, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[unit]


def test_x_axis_is_real_time_not_drill_index(settings):
    first = NOW - timedelta(days=40)
    for at in (first, first + timedelta(days=1), first + timedelta(days=31)):
        report(settings, at)
    _, root, fig = draw(settings)
    xs = sorted(x for x, _ in marker_xy(root, "rto-passed"))
    assert len(xs) == 3
    gap_day, gap_month = xs[1] - xs[0], xs[2] - xs[1]
    assert gap_month / gap_day == pytest.approx(30, rel=0.05), "points spaced by time, not by index"
    ax, _ = panel(fig, "lag")
    import matplotlib.dates as mdates

    lo, hi = ax.get_xlim()
    assert mdates.num2date(lo) <= first and mdates.num2date(hi) >= first + timedelta(days=31)
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)


def test_months_of_drills_have_month_tick_labels(settings):
    first = NOW - timedelta(days=150)
    for week in range(22):
        report(settings, first + timedelta(days=7 * week), size=(200 + week) * 2**30)
    _, root, fig = draw(settings)
    labels = {t.get_text() for t in fig.axes[-1].get_xticklabels()} - {""}
    assert len(labels & MONTHS) >= 3 and labels <= MONTHS | {str(first.year), str(NOW.year)}, labels
    assert labels & MONTHS <= set(texts(root)), "the SVG shows the month names"
    note = " ".join(t for t in texts(root) if t.startswith(("growth", "restoring")))
    assert re.search(r"growth \+[\d.]+ GiB/month: ≈ \d+ GiB a year after the last drill", note), note


def test_objective_lines_at_the_configured_values(settings, monkeypatch):
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__OBJECTIVES__RTO_SECONDS", "7200")
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__OBJECTIVES__RPO_SECONDS", "600")
    from aep_ops import config

    settings = config.load("local")
    report(settings, NOW - timedelta(days=8))
    report(settings, NOW - timedelta(days=1), lag=45.0)
    _, root, fig = draw(settings)
    for key, seconds, label in (("rto", 7200, "objective 2 h"), ("lag", 600, "objective 10 min")):
        ax, lines = panel(fig, key)
        assert set(lines[f"{key}-objective"].get_ydata()) == {seconds / unit_factor(ax)}
        assert group(root, f"{key}-objective") is not None and label in texts(root)
    assert group(root, "throughput-objective") is None and group(root, "size-objective") is None


def test_failures_are_marked_and_a_missing_rto_is_not_drawn_as_zero(settings):
    report(settings, NOW - timedelta(days=21))
    report(settings, NOW - timedelta(days=14), result="failed", rto=None)  # never verified writable
    report(settings, NOW - timedelta(days=7), result="failed", lag=1200.0)  # lag over the RPO objective
    failed_run_in_journal(settings)  # failed before its report: no value at all; journaled at the real now
    # After that run whatever the wall clock says: NOW is taken when the module is imported, which in
    # a whole-suite session is many minutes before this test runs.
    report(settings, datetime.now(timezone.utc) + timedelta(hours=1))
    _, root, fig = draw(settings)

    legend = texts(root)
    assert "drill failed (its measured value)" in legend and "drill failed, value not measured" in legend
    assert " failed before its report" in legend
    assert any(t.startswith("DR drills on local: 5 drills from") and t.endswith("3 failed") for t in legend)

    ax, lines = panel(fig, "rto")
    rto = list(lines["rto-line"].get_ydata())
    assert math.isnan(rto[1]) and math.isnan(rto[3]), "no RTO measured: a gap, not 0"
    assert all(v > 0 for v in rto if not math.isnan(v))
    assert len(marker_xy(root, "rto-passed")) == 2 and len(marker_xy(root, "rto-failed")) == 1
    unmeasured = group(root, "rto-failed-unmeasured")
    assert len(unmeasured.findall(f"{SVG}path")) == 2, "the drill without RTO and the one without report"
    assert len(group(root, "size-failed-unmeasured").findall(f"{SVG}path")) == 1
    assert list(lines["rto-failed"].get_xdata()) == [lines["rto-line"].get_xdata()[2]]
    lag_ax, lag_lines = panel(fig, "lag")
    assert [v * unit_factor(lag_ax) for v in lag_lines["lag-failed"].get_ydata()] == pytest.approx([20.0, 1200.0])


def test_png_and_svg_replaced_atomically_and_only_when_the_history_changes(settings):
    report(settings, NOW - timedelta(days=3))
    paths, _, _ = draw(settings)
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1200, 900)
    before = {k: p.stat().st_mtime_ns for k, p in paths.items()}
    from aep_ops.dr import trend

    again = trend.write_chart(settings)
    assert {k: p.stat().st_mtime_ns for k, p in again.items()} == before, "same history: files untouched"
    report(settings, NOW - timedelta(hours=1))
    svg_before = paths["svg"].read_bytes()
    trend.write_chart(settings)
    assert paths["svg"].read_bytes() != svg_before and paths["png"].read_bytes() != png
    assert sorted(p.name for p in paths["png"].parent.iterdir() if p.name.startswith(".")) == [
        ".dr-trend-local.drawn"], "no temp file left: only the lock that says what was drawn last"
    assert b"<dc:date>" not in paths["svg"].read_bytes()


def test_no_drills_and_one_drill(settings):
    paths, root, _ = draw(settings)
    assert "No DR drills recorded on local yet" in texts(root) and paths["png"].stat().st_size > 0
    report(settings, NOW - timedelta(hours=2), rto=12.5)
    _, root, fig = draw(settings)
    assert len(marker_xy(root, "rto-passed")) == 1
    assert any(t.startswith("RTO: restore start to a verified, writable copy — latest 12.5 s") for t in texts(root))


def test_listing_tasks_does_not_import_matplotlib(tmp_path):
    proc = subprocess.run([str(BIN / "inv"), "--list"], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dr.history" in proc.stdout
    assert "matplotlib" not in proc.stderr and "aep_ops.dr.trend" not in proc.stderr


def test_a_drill_draws_its_chart_in_a_process_of_its_own_and_an_older_picture_never_wins(settings):
    """trend_draw.start returns at once; the child draws this drill's chart. A draw whose data is
    older than the chart already there (two drills close together, the first child slower) leaves
    it alone."""
    from aep_ops.dr import trend_draw

    report(settings, NOW - timedelta(days=2))
    older = trend_draw.job_of(settings)
    report(settings, NOW - timedelta(hours=1))
    paths = trend_draw.start(settings)
    stamp = trend_draw.stamp_path(paths["svg"])
    deadline = time.monotonic() + 60
    while not (stamp.exists() and json.loads(stamp.read_text() or "null") == trend_draw.job_of(settings)["generation"]):
        assert time.monotonic() < deadline, "the drawing process never drew the chart"
        time.sleep(0.02)
    svg = paths["svg"].read_bytes()
    assert b"2 drills" in svg
    trend_draw.draw(older)
    assert paths["svg"].read_bytes() == svg, "the newer chart stays"
    log = (settings.state_dir / "logs" / "aep-ops.jsonl").read_text()
    assert '"dr.trend.drawn"' in log, "the child says in the log what it drew"
