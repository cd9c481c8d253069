"""Drill history and its trend chart, reports/dr-trend-ENV.png and .svg, redrawn after every drill.

A reviewer compares this month's drills with last month's and extrapolates to next year's size
(checklists/drill-review.md). So the x axis is real time, each measure has its own panel and
unit, the objectives are lines, failures are marked, and a value that was never measured is
left out rather than drawn as 0. matplotlib is imported only when a chart is drawn, so
`inv --list` stays fast.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aep_ops.dr.report import reports_dir
from aep_ops.base.errors import ToolMissing
from aep_ops.base.log import get_logger

log = get_logger(__name__)

RUNBOOK = "dr.drill"
NO_REPORT = "failed before its report"  # a journal run that ended before run_report wrote anything
BLUE, RED, ORANGE, GREY = "#1f5fa8", "#c62828", "#e08a00", "#555555"
STYLE = {"svg.hashsalt": "aep-ops dr trend", "svg.fonttype": "none", "timezone": "UTC",
         "font.size": 10, "axes.grid": True, "grid.alpha": 0.35, "axes.spines.top": False,
         "axes.spines.right": False}
NAN = float("nan")


def history(settings: Any) -> list[dict[str, Any]]:
    """This environment's drill reports (reports/dr-drill-*.json), in run-id (= start time) order."""
    reports = []
    for path in sorted(reports_dir(settings).glob("dr-drill-*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (ValueError, OSError):
            continue
    return [r for r in reports if isinstance(r, dict) and r.get("env") == settings.env_name]


@dataclass(frozen=True)
class Drill:
    """One drill at its time on the chart: from its report, or from the journal when it had none."""

    at: datetime
    run_id: str
    result: str  # passed | failed | NO_REPORT
    rto_seconds: float | None = None
    restore_bytes_per_second: float | None = None
    database_bytes: float | None = None
    archive_lag_seconds: float | None = None

    @property
    def failed(self) -> bool:
        return self.result != "passed"


def drills(settings: Any, reports: list[dict[str, Any]] | None = None) -> list[Drill]:
    """Every drill of the environment, oldest first: the reports plus the journal's drills that
    failed before writing one (a step failed earlier, or the run was interrupted)."""
    reports = history(settings) if reports is None else reports
    points = [d for d in (_from_report(r) for r in reports) if d is not None]
    points += failed_without_report(settings, {r.get("run_id") for r in reports})
    return sorted(points, key=lambda d: (d.at, d.run_id))


def _from_report(r: dict[str, Any]) -> Drill | None:
    at = _when(r.get("finished_at"))
    if at is None:
        return None
    return Drill(at=at, run_id=str(r.get("run_id")), result="passed" if r.get("result") == "passed" else "failed",
                 rto_seconds=_number(r.get("rto_seconds")),
                 restore_bytes_per_second=_number(r.get("restore_bytes_per_second")),
                 database_bytes=_number(r.get("database_bytes")),
                 archive_lag_seconds=_number(r.get("archive_lag_seconds")))


def failed_without_report(settings: Any, known: set[Any]) -> list[Drill]:
    """Finished dr.drill runs of the journal that are not a success and left no report."""
    from aep_ops.engine import journal as jr

    try:
        journal = jr.Journal.open(settings)
        try:
            runs = journal.list_runs(runbook=RUNBOOK, env=settings.env_name, limit=100_000)
        finally:
            journal.close()
    except Exception as exc:  # noqa: BLE001 - the chart still shows the reports; say why it lacks these
        log.warning("dr.trend.journal_unreadable", error=str(exc))
        return []
    found = []
    for run in runs:
        at = _when(run.finished_at)
        if run.id in known or at is None or run.status in (jr.RUN_RUNNING, jr.RUN_SUCCEEDED):
            continue
        found.append(Drill(at=at, run_id=run.id, result=NO_REPORT))
    return found


def _when(text: Any) -> datetime | None:
    try:
        at = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def chart_paths(settings: Any) -> dict[str, Path]:
    stem = reports_dir(settings) / f"dr-trend-{settings.env_name}"
    return {"png": stem.with_suffix(".png"), "svg": stem.with_suffix(".svg")}


def objectives(settings: Any, reports: list[dict[str, Any]]) -> dict[str, float | None]:
    """The configured objectives; those of the latest report when the configuration has none."""
    configured = settings.env.get("objectives") or {}
    latest = reports[-1] if reports else {}
    return {key: _number(configured.get(key)) or _number(latest.get(f"{key[:3]}_objective_seconds"))
            for key in ("rto_seconds", "rpo_seconds")}


def write_chart(settings: Any) -> dict[str, Path]:
    """Draw the environment's chart now and replace the PNG and SVG (``dr.history``; a drill draws
    it in a process of its own: ``trend_draw.start``)."""
    from aep_ops.dr import trend_draw

    return trend_draw.draw(trend_draw.job_of(settings))


# --- drawing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    label: str
    field: str
    kind: str  # duration | rate | bytes
    objective: str | None = None  # key in objectives()


PANELS = (
    Panel("rto", "RTO: restore start to a verified, writable copy", "RTO", "rto_seconds", "duration",
          "rto_seconds"),
    Panel("throughput", "Restore throughput: database size / restore time", "throughput", "restore_bytes_per_second",
          "rate"),
    Panel("size", "Database size at drill start (what a restore has to write)", "size", "database_bytes", "bytes"),
    Panel("lag", "Archive lag at drill start: the writes a real restore would have lost then", "lag",
          "archive_lag_seconds", "duration", "rpo_seconds"),
)


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ToolMissing("matplotlib is not installed, so the trend chart cannot be drawn;"
                          " run `make bootstrap` (pip install -e .)") from None
    return matplotlib


def figure(points: list[Drill], *, env: str, objectives: dict[str, float | None]) -> Any:
    """The chart as a matplotlib Figure (Agg canvas): four panels over one real time axis."""
    matplotlib = _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(12, 9), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        if not points:
            ax = fig.add_subplot()
            ax.set_axis_off()
            ax.text(0.5, 0.55, f"No DR drills recorded on {env} yet", ha="center", fontsize=20, gid="no-drills")
            ax.text(0.5, 0.45, "Run `inv dr.drill`: this chart is redrawn after every drill.", ha="center",
                    fontsize=13, color=GREY)
            return fig
        axes = fig.subplots(len(PANELS), 1, sharex=True)
        for ax, panel in zip(axes, PANELS):
            _panel(ax, panel, points, objectives.get(panel.objective) if panel.objective else None)
        _time_axis(axes[-1], points)
        failed = sum(d.failed for d in points)
        first, last = f"{points[0].at:%Y-%m-%d}", f"{points[-1].at:%Y-%m-%d}"
        fig.suptitle(f"DR drills on {env}: {len(points)} drill{'s' * (len(points) != 1)}"
                     f" {f'on {first}' if first == last else f'from {first} to {last}'}, {failed} failed",
                     fontsize=14, fontweight="bold")
        _legend(fig, points, any(objectives.get(p.objective) for p in PANELS if p.objective))
    return fig


def render(fig: Any) -> dict[str, bytes]:
    """PNG and SVG bytes; the same figure gives the same bytes (no date, fixed SVG id salt)."""
    matplotlib = _matplotlib()
    out = {}
    with matplotlib.rc_context(STYLE):
        for kind, metadata in (("png", {"Software": None}), ("svg", {"Date": None, "Creator": None})):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=kind, metadata=metadata, facecolor="white")
            out[kind] = buffer.getvalue()
    return out


def _panel(ax: Any, panel: Panel, points: list[Drill], objective: float | None) -> None:
    import matplotlib.dates as mdates

    raw = [getattr(d, panel.field) for d in points]
    scale, unit = _unit(panel.kind, [v for v in raw if v is not None] + ([objective] if objective else []))
    xs = [mdates.date2num(d.at) for d in points]
    ys = [NAN if v is None else v / scale for v in raw]
    ax.plot(xs, ys, color=BLUE, lw=1.4, alpha=0.7, zorder=2, gid=f"{panel.key}-line")  # NaN: a gap, not 0
    shown = [(x, y, d) for x, y, d in zip(xs, ys, points) if not math.isnan(y)]
    ax.plot([x for x, _, d in shown if not d.failed], [y for _, y, d in shown if not d.failed], ls="none",
            marker="o", ms=5, color=BLUE, zorder=3, gid=f"{panel.key}-passed")
    ax.plot([x for x, _, d in shown if d.failed], [y for _, y, d in shown if d.failed], ls="none", marker="X",
            ms=10, color=RED, markeredgecolor="white", zorder=4, gid=f"{panel.key}-failed")
    unmeasured = [x for x, y, d in zip(xs, ys, points) if d.failed and math.isnan(y)]
    if unmeasured:
        ax.vlines(unmeasured, 0, 1, transform=ax.get_xaxis_transform(), colors=RED, linestyles="--", lw=1.3,
                  zorder=1, gid=f"{panel.key}-failed-unmeasured")
    if panel is PANELS[0]:
        for d in points:
            if d.result == NO_REPORT:
                ax.annotate(f" {NO_REPORT}", (mdates.date2num(d.at), 1), xycoords=ax.get_xaxis_transform(),
                            rotation=90, va="top", ha="right", color=RED, fontsize=8)
    top = max([y for _, y, _ in shown] + ([objective / scale] if objective else []) + [0.0]) or 1.0
    if objective:
        ax.axhline(objective / scale, color=ORANGE, ls=(0, (6, 3)), lw=1.8, zorder=1, gid=f"{panel.key}-objective")
        ax.annotate(f"objective {_fmt(objective, scale, unit)}", (0.005, objective / scale),
                    xycoords=ax.get_yaxis_transform(), xytext=(0, 3), textcoords="offset points",
                    va="bottom", color=ORANGE, fontsize=9, fontweight="bold")
    ax.set_ylim(-0.05 * top, top * 1.18)  # a value of 0 sits above the axis line, not on it
    ax.set_ylabel(f"{panel.label} ({unit})")
    latest = next((d for d in reversed(points) if getattr(d, panel.field) is not None), None)
    said = (f"latest {_fmt(getattr(latest, panel.field), scale, unit)} ({latest.at:%Y-%m-%d %H:%M})" if latest
            else "not measured yet")
    ax.set_title(f"{panel.title} — {said}", loc="left", fontsize=11)
    if panel.key == "size":
        note = projection(points)
        if note:
            ax.text(0.99, 0.06, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=9, color=GREY,
                    bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "#cccccc"}, gid="size-projection")


def _unit(kind: str, values: list[float]) -> tuple[float, str]:
    top = max(values, default=0.0)
    if kind == "duration":
        return (1.0, "s") if top < 180 else (60.0, "min") if top < 10 * 3600 else (3600.0, "h")
    if kind == "rate":
        return float(2**20), "MiB/s"
    return next((float(f), u) for f, u in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (1, "bytes"))
                if top >= f or u == "bytes")


def _fmt(value: float, scale: float, unit: str) -> str:
    """A value for a person: 3 significant digits at most, durations in their own best unit."""
    if unit in ("s", "min", "h"):
        whole_hours = value >= 3600 and value % 3600 == 0
        scale, unit = ((1.0, "s") if value < 120 else (3600.0, "h") if whole_hours or value >= 3 * 3600
                       else (60.0, "min"))
    scaled = value / scale
    text = f"{scaled:.{0 if scaled >= 100 else 1 if scaled >= 10 else 2}f}"
    return f"{text.rstrip('0').rstrip('.') if '.' in text else text} {unit}"


def projection(points: list[Drill]) -> str | None:
    """Growth per month (least squares over the drills) and what it means a year after the last one."""
    sized = [(d.at, d.database_bytes) for d in points if d.database_bytes]
    if len(sized) < 2 or sized[-1][0] - sized[0][0] < timedelta(days=1):
        return None
    days = [(at - sized[0][0]).total_seconds() / 86400 for at, _ in sized]
    sizes = [b for _, b in sized]
    slope = statistics.linear_regression(days, sizes).slope  # bytes per day
    in_a_year = max(sizes[-1] + slope * 365, 0.0)
    scale, unit = _unit("bytes", [in_a_year, sizes[-1]])
    line = (f"growth {'+' if slope >= 0 else '-'}{_fmt(abs(slope) * 30.44, scale, unit)}/month:"
            f" ≈ {_fmt(in_a_year, scale, unit)} a year after the last drill")
    rates = [d.restore_bytes_per_second for d in points if d.restore_bytes_per_second][-5:]
    if rates:
        rate = statistics.median(rates)
        seconds = in_a_year / rate
        t_scale, t_unit = _unit("duration", [seconds])
        line += (f"\nrestoring that at the recent {rate / 2**20:.0f} MiB/s (median of the last {len(rates)})"
                 f" takes ≈ {_fmt(seconds, t_scale, t_unit)}")
    return line


def _time_axis(ax: Any, points: list[Drill]) -> None:
    import matplotlib.dates as mdates

    first, last = points[0].at, points[-1].at
    span = last - first
    pad = max(span * 0.04, timedelta(minutes=1)) if span else timedelta(hours=12)
    ax.set_xlim(mdates.date2num(first - pad), mdates.date2num(last + pad))
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, show_offset=True))
    ax.set_xlabel("drill finished (UTC). A gap in a line: that drill did not measure the value (never drawn as 0)")


def _legend(fig: Any, points: list[Drill], has_objective: bool) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=BLUE, marker="o", ms=5, label="drill passed")]
    values = [[getattr(d, p.field) for p in PANELS] for d in points if d.failed]
    if any(v is not None for row in values for v in row):
        handles.append(Line2D([], [], color=RED, marker="X", ms=10, ls="none", markeredgecolor="white",
                              label="drill failed (its measured value)"))
    if any(v is None for row in values for v in row):
        handles.append(Line2D([], [], color=RED, ls="--", lw=1.3, label="drill failed, value not measured"))
    if has_objective:
        handles.append(Line2D([], [], color=ORANGE, ls=(0, (6, 3)), lw=1.8, label="objective"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False, fontsize=10)
