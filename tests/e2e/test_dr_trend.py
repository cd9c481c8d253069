"""The trend chart as the weekly drill leaves it: real drills (PostgreSQL, pgBackRest, restore)
redraw reports/dr-trend-ENV.png and .svg, in a process of their own that outlives the drill (so
each test waits for the chart the drill started); a drill that fails before its report is still
marked; a chart that cannot be written never fails the drill."""

from __future__ import annotations

import json
import struct
import time
import xml.etree.ElementTree as ET
from datetime import datetime

SVG = "{http://www.w3.org/2000/svg}"


def drill(cli, *args, **kw):
    return cli("dr.drill", *args, timeout=300, **kw)


def texts(path):
    return ["".join(t.itertext()) for t in ET.parse(path).getroot().iter(f"{SVG}text")]


def charts(local_env):
    return local_env / "reports" / "dr-trend-local.png", local_env / "reports" / "dr-trend-local.svg"


def wait_drawn(local_env, drills, timeout=60):
    """The background drawing of the chart with ``drills`` drills on it has finished: its stamp says so."""
    stamp = local_env / "reports" / ".dr-trend-local.drawn"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if json.loads(stamp.read_text())[1] == drills:
                return
        except (OSError, ValueError, TypeError, IndexError):
            pass
        assert time.monotonic() < deadline, f"no chart with {drills} drills drawn within {timeout}s"
        time.sleep(0.05)


def log_events(local_env, event):
    path = local_env / "logs" / "aep-ops.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if f'"{event}"' in line]


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_every_drill_redraws_the_chart_and_a_hard_failure_is_marked(cli, local_env, tmp_path):
    png, svg = charts(local_env)
    first = drill(cli, check_rc=0)
    assert f"trend chart: {png} (and .svg; redrawn in the background)" in first.stdout, "where its chart is"
    wait_drawn(local_env, 1)
    assert png_size(png) == (1200, 900)
    assert any(t.startswith("DR drills on local: 1 drill on ") for t in texts(svg))
    first_svg, first_png = svg.read_bytes(), png.read_bytes()

    out = tmp_path / "second.json"
    drill(cli, "--json-file", str(out), check_rc=0)
    second = json.loads(out.read_text())
    wait_drawn(local_env, 2)
    assert svg.read_bytes() != first_svg and png.read_bytes() != first_png, "the second drill redrew both"
    finished = datetime.fromisoformat(second["finished_at"])
    shown = texts(svg)
    assert any(t.startswith("DR drills on local: 2 drills") for t in shown)
    assert any(t.startswith("RTO: restore start") and t.endswith(f"({finished:%Y-%m-%d %H:%M})") for t in shown), \
        "the newest drill's time is on the chart"
    assert second["database_bytes"] > 0 and second["restore_bytes_per_second"] > 0

    # fails in the restore step, before run_report: no report, only the journal knows
    failing = drill(cli, "--read-only-source", "--target-time", "2001-01-01T00:00:00Z")
    assert failing.returncode != 0 and "before the earliest recoverable point" in failing.stderr
    listing = cli("dr.history", check_rc=0).stdout
    assert listing.count(" passed ") == 2 and f"chart: {png} and {svg}" in listing
    shown = texts(svg)
    assert " failed before its report" in shown and "drill failed, value not measured" in shown
    assert any(t.startswith("DR drills on local: 3 drills") and t.endswith("1 failed") for t in shown)


def test_a_chart_that_cannot_be_written_does_not_fail_the_drill(cli, local_env, tmp_path):
    png, _ = charts(local_env)
    png.mkdir(parents=True)  # a directory where the PNG goes: the rename fails
    out = tmp_path / "drill.json"
    drill(cli, "--json-file", str(out), check_rc=0)
    report = json.loads(out.read_text())
    assert report["result"] == "passed"
    assert (local_env / "reports" / f"dr-drill-{report['run_id']}.json").exists()
    deadline = time.monotonic() + 60
    while not (warnings := log_events(local_env, "dr.trend.not_drawn")):  # said by the drawing process, in the log
        assert time.monotonic() < deadline, "the drawing process never said why the chart is missing"
        time.sleep(0.05)
    assert len(warnings) == 1 and warnings[0]["level"] == "warning"
    assert str(png) in warnings[0]["error"] and "dr.history" in warnings[0]["todo"]


def test_history_with_no_drills(cli, local_env):
    png, svg = charts(local_env)
    listing = cli("dr.history", check_rc=0)
    assert listing.stdout.strip() == f"no drills recorded on local (chart: {png})"
    assert "No DR drills recorded on local yet" in texts(svg) and png_size(png) == (1200, 900)
    data = json.loads(cli("dr.history", "--json", check_rc=0).stdout)
    assert data["drills"] == [] and data["charts"] == {"png": str(png), "svg": str(svg)}
