"""The tables and verdicts of `bench/drill.py`: one table per scale (each drill + floor pair and the
medians), a summary with one row per scale, a least-squares line of drill time against size, and
the targets judged on it."""

from __future__ import annotations

import statistics
from typing import Any

TARGET_RATIO = 1.3  # drill whole process / floor total, at every scale
TARGET_OVERHEAD = 0.3  # seconds of the drill process before its first step and after its last
PER_GB_TOLERANCE = 1.05  # seconds per GB may not grow by more than this from one scale to the next
LAG_SLACK = 5.0
GB = 2**30
EXTRAPOLATE_GB = (100, 500)
PHASE_ORDER = ("source", "preflight", "backup", "sentinels", "restore", "verify")


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _s(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):8.2f} s"


def _r3(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _x(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):9.2f}x"


def human(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- one scale ------------------------------------------------------------------------------


def pair_measures(run: dict[str, Any]) -> list[tuple[str, float | None]]:
    """One drill + floor pair as (measure, seconds) rows."""
    drill, floor = run["drill"], run["floor"]
    report = drill["report"]
    split = drill["journal"].get("restore_split") or {}
    overhead = drill["overhead"]
    phases = report["phases_seconds"]  # in the order they run (the report's JSON sorts its keys)
    rows = [("drill phase: " + name, phases[name]) for name in sorted(phases, key=_phase_rank)]
    rows += [("drill pg_amcheck (report, in the verify phase)", (report.get("amcheck") or {}).get("seconds")),
             ("drill whole process (inv dr.drill)", drill["seconds"]),
             ("drill fixed overhead: start to first step", overhead["before_first_step"]),
             ("drill fixed overhead: last step to exit", overhead["after_last_step"]),
             ("drill fixed overhead", overhead["seconds"]),
             ("drill RTO (report)", report.get("rto_seconds")),
             ("drill RPO (report)", report.get("rpo_seconds")),
             ("drill pgbackrest restore (journal)", split.get("pgbackrest_seconds")),
             ("drill restore incl. prep (journal)", split.get("restore_seconds")),
             ("drill configure + start + replay + promote (journal)", split.get("recovery_seconds")),
             ("floor restore (pgbackrest restore)", floor["restore_seconds"]),
             ("floor start + recovery + promotion", floor["recovery_seconds"]),
             ("floor restore + recovery", floor["restore_recovery_seconds"]),
             ("floor create extension + pg_amcheck", floor["amcheck_seconds"]),
             ("floor total", floor["total_seconds"])]
    return rows


def _phase_rank(name: str) -> int:
    return PHASE_ORDER.index(name) if name in PHASE_ORDER else len(PHASE_ORDER)


def pair_ratios(run: dict[str, Any]) -> dict[str, float | None]:
    phases, floor = run["drill"]["report"]["phases_seconds"], run["floor"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    return {"whole_over_floor": ratio(run["drill"]["seconds"], floor["total_seconds"]),
            "restore_phase_over_floor_restore": ratio(phases.get("restore"), floor["restore_recovery_seconds"]),
            "verify_phase_over_floor_amcheck": ratio(phases.get("verify"), floor["amcheck_seconds"])}


def scale_table(sc: dict[str, Any]) -> str:
    """The table of one scale; sets sc["ratios"], sc["medians"] and sc["summary"]."""
    runs = sc["runs"]
    many = len(runs) > 1
    per_run = [dict(pair_measures(run)) for run in runs]
    names = [name for name, _ in pair_measures(runs[0])]
    ratios = [pair_ratios(run) for run in runs]
    for run, r in zip(runs, ratios):
        run["ratios"] = r
    medians = {name: median([r.get(name) for r in per_run]) for name in names}
    med_ratios = {k: median([r[k] for r in ratios]) for k in ratios[0]}
    overhead = medians["drill fixed overhead"]
    checks = [(f"drill whole / floor total (<= {TARGET_RATIO})", "whole_over_floor"),
              ("drill restore phase / floor restore + recovery (info)", "restore_phase_over_floor_restore"),
              ("drill verify phase / floor amcheck (info)", "verify_phase_over_floor_amcheck")]
    over_name = f"drill fixed overhead (<= {TARGET_OVERHEAD} s)"
    width = max(len(n) for n in names + [c[0] for c in checks])
    heads = [f"run {i + 1}" for i in range(len(runs))] + (["median"] if many else [])
    head = f"{'measure':<{width}}" + "".join(f"  {h:>10}" for h in heads) + "  target"
    rule = "-" * len(head)
    lines = [f"scale {sc['scale']}: aep {sc['aep_bytes'] / GB:.2f} GiB", head, rule]
    for name in names:
        values = [r.get(name) for r in per_run] + ([medians[name]] if many else [])
        lines.append(f"{name:<{width}}" + "".join(f"  {_s(v):>10}" for v in values))
    lines.append(rule)
    ratio_ok = None if med_ratios["whole_over_floor"] is None else med_ratios["whole_over_floor"] <= TARGET_RATIO
    over_ok = None if overhead is None else overhead <= TARGET_OVERHEAD
    for name, key in checks:
        values = [r[key] for r in ratios] + ([med_ratios[key]] if many else [])
        mark = verdict(ratio_ok) if key == "whole_over_floor" else ""
        lines.append(f"{name:<{width}}" + "".join(f"  {_x(v):>10}" for v in values) + f"  {mark}".rstrip())
    values = [r.get("drill fixed overhead") for r in per_run] + ([overhead] if many else [])
    lines.append(f"{over_name:<{width}}" + "".join(f"  {_s(v):>10}" for v in values) + f"  {verdict(over_ok)}")
    results = [run["drill"]["report"].get("result") for run in runs]
    lines.append(f"drill result{'s' if many else ''}: {', '.join(map(str, results))}")
    if many:
        lines.append(f"(verdicts on the median of {len(runs)} drill + floor pairs)")
    gb = sc["aep_bytes"] / GB
    whole = medians["drill whole process (inv dr.drill)"]
    sc["medians"], sc["ratios"] = medians, med_ratios
    sc["summary"] = {
        "gb": round(gb, 4), "drill_restore": _r3(medians["drill phase: restore"]),
        "drill_verify": _r3(medians["drill phase: verify"]), "drill_whole": _r3(whole),
        "floor_restore_recovery": _r3(medians["floor restore + recovery"]),
        "floor_amcheck": _r3(medians["floor create extension + pg_amcheck"]),
        "floor_total": _r3(medians["floor total"]),
        "ratio": _r3(med_ratios["whole_over_floor"]), "overhead": _r3(overhead),
        "drill_seconds_per_gb": round(whole / gb, 3) if whole is not None and gb else None,
        "drills_passed": all(r == "passed" for r in results)}
    return "\n".join(lines)


# --- all scales -----------------------------------------------------------------------------


def fit(xs: list[float], ys: list[float]) -> dict[str, float | None] | None:
    """Least squares y = intercept + slope * x; None with fewer than two distinct x."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    ss_tot = sum((y - my) ** 2 for y in ys)
    return {"slope_seconds_per_gb": round(slope, 4), "intercept_seconds": round(intercept, 4),
            "r2": round(1 - ss_res / ss_tot, 5) if ss_tot else None, "points": n}


def _fit_line(what: str, f: dict[str, Any] | None) -> str:
    if f is None:
        return f"{what}: a line needs at least two sizes (--scales 70,280,560)"
    slope, intercept = f["slope_seconds_per_gb"], f["intercept_seconds"]
    r2 = "n/a" if f["r2"] is None else f"{f['r2']:.3f}" + (", two points" if f["points"] == 2 else "")
    line = f"{what} ≈ {intercept:.2f} {'-' if slope < 0 else '+'} {abs(slope):.2f} s/GB × size (r² {r2})"
    if slope <= 0:
        return line + ": no extrapolation (no time per GB seen: sizes this small are fixed costs and noise)"
    return line + ": " + ", ".join(f"a {gb} GB database ≈ {human(intercept + slope * gb)}" for gb in EXTRAPOLATE_GB)


def summary(res: dict[str, Any]) -> tuple[str, bool]:
    """The table with one row per scale, the fits and the verdicts; sets res["fit"], res["targets"]."""
    rows = [sc["summary"] for sc in res["scales"]]
    cols = [("scale", None), ("GB", "gb"), ("restore", "drill_restore"), ("verify", "drill_verify"),
            ("whole", "drill_whole"), ("floor r+r", "floor_restore_recovery"), ("floor chk", "floor_amcheck"),
            ("floor", "floor_total"), ("whole/fl", "ratio"), ("overhead", "overhead"), ("s/GB", "drill_seconds_per_gb")]
    head = "".join(f"{name:>10}" for name, _ in cols)
    lines = ["summary (drill phases and whole process, floor parts: medians; seconds)",
             "restore, verify: the drill's phases; floor r+r: restore + recovery; floor chk: create extension"
             " + pg_amcheck", head, "-" * len(head)]
    for sc, row in zip(res["scales"], rows):
        cells = [f"{sc['scale']:>10}"]
        for name, key in cols[1:]:
            value = row[key]
            fmt = "{:9.2f}x" if key == "ratio" else ("{:10.3f}" if key == "gb" else "{:10.2f}")
            cells.append(f"{'n/a':>10}" if value is None else fmt.format(value))
        lines.append("".join(cells))
    lines.append("")
    xs = [r["gb"] for r in rows]
    res["fit"] = {"drill": fit(xs, [r["drill_whole"] for r in rows]),
                  "floor": fit(xs, [r["floor_total"] for r in rows])}
    lines += [_fit_line("drill", res["fit"]["drill"]), _fit_line("floor", res["fit"]["floor"])]
    marginal = []
    for a, b in zip(rows, rows[1:]):
        if b["gb"] > a["gb"]:
            cost = (b["drill_whole"] - a["drill_whole"]) / (b["gb"] - a["gb"])
            floor_cost = (b["floor_total"] - a["floor_total"]) / (b["gb"] - a["gb"])
            marginal.append({"from_gb": a["gb"], "to_gb": b["gb"], "drill_seconds_per_gb": round(cost, 3),
                             "floor_seconds_per_gb": round(floor_cost, 3)})
            lines.append(f"marginal cost {a['gb']:.2f} -> {b['gb']:.2f} GB (info): drill {cost:.2f} s/GB,"
                         f" floor {floor_cost:.2f} s/GB")
    res["fit"]["marginal"] = marginal
    lines.append("")
    ratio_ok = all(r["ratio"] is not None and r["ratio"] <= TARGET_RATIO for r in rows)
    over_ok = all(r["overhead"] is not None and r["overhead"] <= TARGET_OVERHEAD for r in rows)
    growth = [(a, b) for a, b in zip(rows, rows[1:])]
    per_gb_ok = None if not growth else all(
        b["drill_seconds_per_gb"] <= a["drill_seconds_per_gb"] * PER_GB_TOLERANCE for a, b in growth)
    worst_ratio = max((r["ratio"] for r in rows if r["ratio"] is not None), default=None)
    worst_over = max((r["overhead"] for r in rows if r["overhead"] is not None), default=None)
    per_gb = " -> ".join(f"{r['drill_seconds_per_gb']:.2f}" for r in rows)
    targets = [(f"drill whole / floor total <= {TARGET_RATIO} at every scale (worst {_x(worst_ratio).strip()})",
                ratio_ok),
               (f"drill fixed overhead <= {TARGET_OVERHEAD} s at every scale (worst {_s(worst_over).strip()})",
                over_ok),
               (f"drill s/GB not growing with size ({per_gb}; each <= the previous scale's"
                f" x {PER_GB_TOLERANCE}{', needs two scales' if per_gb_ok is None else ''})", per_gb_ok)]
    lag = res.get("idle_lag")
    lag_ok = None
    if lag:
        max_lag, limit = lag["max_lag_seconds"], lag["archive_timeout"] + LAG_SLACK
        lag_ok = max_lag is not None and max_lag <= limit  # no lag read at all is a miss
        targets.append((f"idle archive lag {_s(max_lag).strip()}, max of {len(lag['samples'])}"
                        f" (<= archive_timeout + {LAG_SLACK:g} = {limit:g} s)", lag_ok))
    drills_ok = all(r["drills_passed"] for r in rows)
    width = max(len(t) for t, _ in targets)
    lines += [f"{text:<{width}}  {verdict(ok)}" for text, ok in targets]
    if not drills_ok:
        lines.append("a drill FAILED (see the per-scale tables and bench-logs/)")
    res["targets"] = {"whole_over_floor": verdict(ratio_ok), "fixed_overhead": verdict(over_ok),
                      "seconds_per_gb_not_growing": verdict(per_gb_ok),
                      "idle_archive_lag": verdict(lag_ok) if lag else "not run (--lag)", "drills_passed": drills_ok}
    ok = ratio_ok and over_ok and per_gb_ok is not False and drills_ok and lag_ok is not False
    return "\n".join(lines), ok
