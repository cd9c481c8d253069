"""``dr.history``: past drills with their RTO/RPO, and the trend chart (PNG + SVG) in the reports directory."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json


@task(help={"env": "environment (default: local)", "json": "print JSON"})
def history(c, env=None, json=False):
    """List past drills (result, RTO, RPO, archive lag) and redraw reports/dr-trend-ENV.png and .svg."""
    from aep_ops.dr import trend

    with front_door():
        settings = load_settings(env)
        reports = trend.history(settings)
        charts = trend.write_chart(settings)
        if json:
            print_json({"drills": reports, "chart": str(charts["svg"]),
                        "charts": {k: str(v) for k, v in charts.items()}})
            return
        if not reports:
            print(f"no drills recorded on {settings.env_name} (chart: {charts['png']})")
            return

        def fmt(value):
            return "n/a" if value is None else f"{value:.1f}s"

        print(f"{'run':<26} {'result':<7} {'RTO':>8} {'RPO':>8} {'lag':>8}  target")
        for r in reports:
            print(f"{r['run_id']:<26} {r['result']:<7} {fmt(r.get('rto_seconds')):>8} {fmt(r.get('rpo_seconds')):>8}"
                  f" {fmt(r.get('archive_lag_seconds')):>8}  {r.get('target_time')}")
        print(f"chart: {charts['png']} and {charts['svg']}")
