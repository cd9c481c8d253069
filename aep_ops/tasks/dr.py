"""``dr.history``: past drills with their RTO/RPO, and a trend chart in the reports directory."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json


@task(help={"env": "environment (default: local)", "json": "print JSON"})
def history(c, env=None, json=False):
    """List past drills (result, RTO, RPO, archive lag) and write reports/dr-trend-ENV.svg."""
    from aep_ops.dr import report as drill_report

    with front_door():
        settings = load_settings(env)
        reports = drill_report.history(settings)
        chart = drill_report.trend_svg(reports, drill_report.reports_dir(settings) / f"dr-trend-{settings.env_name}.svg")
        if json:
            print_json({"drills": reports, "chart": str(chart)})
            return
        if not reports:
            print(f"no drills recorded on {settings.env_name}")
            return

        def fmt(value):
            return "n/a" if value is None else f"{value:.1f}s"

        print(f"{'run':<26} {'result':<7} {'RTO':>8} {'RPO':>8} {'lag':>8}  target")
        for r in reports:
            print(f"{r['run_id']:<26} {r['result']:<7} {fmt(r.get('rto_seconds')):>8} {fmt(r.get('rpo_seconds')):>8}"
                  f" {fmt(r.get('archive_lag_seconds')):>8}  {r.get('target_time')}")
        print(f"chart: {chart}")
