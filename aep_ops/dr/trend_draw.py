"""The trend chart drawn by a process of its own once the drill's evidence is written.

Drawing it (matplotlib's import, the layout, a PNG and an SVG) costs about 1.4 s of CPU: as long
as the whole restore of a 1 GB database. The drill writes its report and metrics, hands the
chart's data to ``python -m aep_ops.dr.trend_draw`` on stdin and goes on; the child draws and
logs ``dr.trend.drawn`` or the warning ``dr.trend.not_drawn`` to ``STATE_DIR/logs/aep-ops.jsonl``.
``inv dr.history`` draws in its own process, and waits.

Two draws of one environment at once (two drills in a row, a drill and ``dr.history``) take turns
on a lock on ``.dr-trend-ENV.drawn`` beside the chart (which also says what was drawn last), and a draw whose data is older than the chart already drawn
leaves it alone: the newest drill is never overwritten by an older picture.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

CHILD = "aep_ops.dr.trend_draw"


def job_of(settings: Any) -> dict[str, Any]:
    """Everything the drawing needs, as JSON: no settings, no journal, no secrets."""
    from aep_ops.dr import trend

    reports = trend.history(settings)
    points = trend.drills(settings, reports)
    return {"env": settings.env_name, "state_dir": str(settings.state_dir),
            "objectives": trend.objectives(settings, reports),
            "paths": {kind: str(path) for kind, path in trend.chart_paths(settings).items()},
            "points": [{**asdict(p), "at": p.at.isoformat()} for p in points],
            "generation": [points[-1].at.isoformat() if points else "", len(points)]}


def draw(job: dict[str, Any]) -> dict[str, Path]:
    """Draw and replace the PNG and SVG (StateUnwritable when they cannot be written)."""
    from aep_ops.base.atomicfile import replace_file
    from aep_ops.base.errors import StateUnwritable
    from aep_ops.dr import trend

    paths = {kind: Path(path) for kind, path in job["paths"].items()}
    paths["svg"].parent.mkdir(parents=True, exist_ok=True)
    with open(stamp_path(paths["svg"]), "a+") as stamp:  # the lock, and what was drawn last
        fcntl.flock(stamp, fcntl.LOCK_EX)
        if _drawn(stamp) > job["generation"]:
            return paths  # a newer drill's chart is there already
        points = [trend.Drill(**{**p, "at": datetime.fromisoformat(p["at"])}) for p in job["points"]]
        fig = trend.figure(points, env=job["env"], objectives=job["objectives"])
        for kind, data in trend.render(fig).items():
            try:
                replace_file(paths[kind], data)
            except OSError as exc:
                raise StateUnwritable(f"cannot write {paths[kind]}: {exc.strerror or exc};"
                                      f" make {paths[kind].parent} writable or set state_dir elsewhere") from None
        stamp.seek(0)
        stamp.truncate()
        stamp.write(json.dumps(job["generation"]))
    return paths


def stamp_path(svg: Path) -> Path:
    return svg.parent / f".{svg.stem}.drawn"


def start(settings: Any) -> dict[str, Path]:
    """Start the drawing process and return the paths it will write (it outlives this run)."""
    from aep_ops.base.errors import StateUnwritable

    job = job_of(settings)
    child = subprocess.Popen([sys.executable, "-m", CHILD], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    try:
        child.stdin.write(json.dumps(job).encode())
        child.stdin.close()
    except OSError as exc:  # it died before reading: say so as a chart not drawn
        raise StateUnwritable(f"the chart drawing process exited at once (exit {child.wait()}): {exc}") from None
    return {kind: Path(path) for kind, path in job["paths"].items()}


def _drawn(stamp: Any) -> list[Any]:
    try:
        stamp.seek(0)
        return list(json.loads(stamp.read() or "null"))
    except (OSError, ValueError, TypeError):
        return ["", 0]


def main() -> int:
    from aep_ops.base.log import configure, get_logger

    job = json.loads(sys.stdin.read())
    with open(os.devnull, "w") as quiet:
        configure(Path(job["state_dir"]), stream=quiet)
        log = get_logger(CHILD)
        try:
            paths = draw(job)
        except Exception as exc:  # noqa: BLE001 - the evidence is written; the chart is a view of it
            log.warning("dr.trend.not_drawn", env=job["env"], error=f"{type(exc).__name__}: {exc}",
                        todo="`inv dr.history` redraws it")
            return 1
        log.info("dr.trend.drawn", env=job["env"], png=str(paths["png"]), svg=str(paths["svg"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
