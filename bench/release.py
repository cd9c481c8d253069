"""Release runbooks under load: failed requests across blue-green switches, the switch's cost against
the bare listener change, and how fast a degraded canary is caught and rolled back.

Real pieces, as in the tests: moto's server for ELBv2, two app processes (aep_ops/testing/release_app.py),
a real nginx whose upstream follows the moto listener (aep_ops/testing/alb_nginx.py), steady load
(aep_ops/testing/load.py, 4 threads at 100 requests/s).

1. ``--switches N`` blue-green switches, alternating colours, each ``aep-ops release.bluegreen`` as a
   whole process (deregistration delay 0, so the drain is its quiet-window check alone): seconds from
   the process's start to the listener reading the new weights, and to its end. Floor: the same change
   done by hand in this process, ``modify_listener`` then ``describe_listeners`` until it reads back.
   Target: zero failed requests.
2. ``--canaries N`` canaries with the green app answering half its requests with 500, steps 25,100 and a
   60 s step wait: seconds from the first 500 a client saw to the listener reading blue 100% again.
   Floor: the time the canary needs to see ``min_requests`` requests at 25% of the load (it may not judge
   sooner), plus one poll. Target: under the step wait (caught during the step, not at its end).

    .venv/bin/python bench/release.py [--switches 10] [--canaries 5]

Exit 0 when the targets are met, 1 when missed, 2 when the bench could not run. Results go to
bench/results/release-*.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aep_ops.testing.alb_nginx import AlbNginx, forward_action, make_alb  # noqa: E402
from aep_ops.testing.load import LoadDriver  # noqa: E402
from aep_ops.testing.moto import start_moto_server, stop_moto_server  # noqa: E402
from aep_ops.testing.release_app import start_app  # noqa: E402

BIN = Path(sys.executable).parent
RATE, MIN_REQUESTS, STEP_WAIT, CANARY_SHARE = 100, 20, 60, 0.25


def config(path: Path, moto, arns) -> dict[str, str]:
    path.write_text(f"""environments:
  bench:
    production: false
    backend: local
    aws: {moto.aws_yaml}
    release:
      listener_arn: {arns['listener']}
      target_groups: {{blue: {arns['blue']}, green: {arns['green']}}}
      metric_lag_seconds: 0
      min_requests: {MIN_REQUESTS}
""")
    return {**os.environ, **moto.environ, "AEP_OPS_CONFIG": str(path), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
            "AEP_OPS_STATE_DIR": str(path.parent / "state")}


def weights(elbv2, arns) -> dict[str, int]:
    action = elbv2.describe_listeners(ListenerArns=[arns["listener"]])["Listeners"][0]["DefaultActions"][0]
    by_arn = {g["TargetGroupArn"]: g["Weight"] for g in action["ForwardConfig"]["TargetGroups"]}
    return {c: by_arn[arns[c]] for c in ("blue", "green")}


def floor_switch(elbv2, arns, to: str) -> float:
    wanted = {to: 100, ("green" if to == "blue" else "blue"): 0}
    started = time.monotonic()
    elbv2.modify_listener(ListenerArn=arns["listener"], DefaultActions=[forward_action(
        {arns[c]: w for c, w in wanted.items()})])
    while weights(elbv2, arns) != wanted:
        time.sleep(0.05)
    return time.monotonic() - started


def switches(count: int, env, elbv2, arns, data_path, load) -> dict:
    runs, switched, floors, failed_before = [], [], [], len(load.failures())
    for number in range(count):
        to = "green" if number % 2 == 0 else "blue"
        wanted = {to: 100, ("green" if to == "blue" else "blue"): 0}
        started = time.monotonic()
        proc = subprocess.Popen([str(BIN / "aep-ops"), "release.bluegreen", "--env", "bench", "--to", to], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while weights(elbv2, arns) != wanted and proc.poll() is None:
            time.sleep(0.01)
        switched.append(time.monotonic() - started)
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"release.bluegreen --to {to} exited {proc.returncode}: {err[-500:]}")
        runs.append(time.monotonic() - started)
        data_path.wait_applied({arns[c]: w for c, w in wanted.items()})
        back = "blue" if to == "green" else "green"  # floor: the same change and back, by hand
        floors.append(floor_switch(elbv2, arns, back))
        floor_switch(elbv2, arns, to)
    return {"switches": count, "failed_requests": len(load.failures()) - failed_before, "requests": load.count(),
            "to_switched_median_s": statistics.median(switched), "whole_median_s": statistics.median(runs),
            "floor_median_s": statistics.median(floors)}


def canaries(count: int, env, elbv2, arns, data_path, apps, load) -> dict:
    detections = []
    for _ in range(count):
        floor_switch(elbv2, arns, "blue")
        data_path.wait_applied({arns["blue"]: 100, arns["green"]: 0})
        apps["green"].degrade(0.5)
        since = time.monotonic()
        proc = subprocess.Popen([str(BIN / "aep-ops"), "release.canary", "--env", "bench", "--steps", "25,100",
                                 "--step-wait", f"{STEP_WAIT}s"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            while weights(elbv2, arns)["green"] != 25:
                time.sleep(0.02)
            while weights(elbv2, arns) != {"blue": 100, "green": 0}:
                time.sleep(0.02)
            back = time.monotonic()
            if proc.wait(timeout=60) != 5:
                raise RuntimeError(f"the degraded canary exited {proc.returncode}, not 5")
        finally:
            if proc.poll() is None:
                proc.kill()
            apps["green"].degrade(0)
        first = min(s.started for s in load.samples(since=since) if s.status == 500)
        detections.append(back - first)
    floor = MIN_REQUESTS / (RATE * CANARY_SHARE)
    return {"canaries": count, "detection_median_s": statistics.median(detections), "detection_max_s": max(detections),
            "floor_s": floor, "ratio": statistics.median(detections) / floor, "step_wait_s": STEP_WAIT}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--canaries", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    moto, apps, data_path = start_moto_server(), {}, None
    try:
        apps = {c: start_app(c) for c in ("blue", "green")}
        elbv2 = moto.client("elbv2")
        arns = make_alb(elbv2, moto.client("ec2"), [apps["blue"].port], [apps["green"].port])
        for colour in ("blue", "green"):
            elbv2.modify_target_group_attributes(TargetGroupArn=arns[colour], Attributes=[
                {"Key": "deregistration_delay.timeout_seconds", "Value": "0"}])
        data_path = AlbNginx(elbv2, arns["listener"]).start()
        with tempfile.TemporaryDirectory(prefix="aep-release-bench-") as tmp:
            env = config(Path(tmp) / "aep-ops.yaml", moto, arns)
            with LoadDriver(data_path.url, threads=4, rate=RATE) as load:
                load.wait_count(50)
                bluegreen = switches(args.switches, env, elbv2, arns, data_path, load)
                canary = canaries(args.canaries, env, elbv2, arns, data_path, apps, load)
    except (RuntimeError, OSError) as exc:
        print(f"bench could not run: {exc}", file=sys.stderr)
        return 2
    finally:
        if data_path is not None:
            data_path.stop()
        for app in apps.values():
            app.stop()
        stop_moto_server(moto)
    met = bluegreen["failed_requests"] == 0 and canary["detection_max_s"] < STEP_WAIT
    print(f"blue-green: {bluegreen['switches']} switches, {bluegreen['failed_requests']} failed of"
          f" {bluegreen['requests']} requests; from process start to the listener switched"
          f" {bluegreen['to_switched_median_s']:.2f} s median (the bare change read back by hand:"
          f" {bluegreen['floor_median_s']:.3f} s), whole run with the drain check {bluegreen['whole_median_s']:.2f} s")
    print(f"canary: degraded green caught and rolled back in {canary['detection_median_s']:.2f} s median,"
          f" {canary['detection_max_s']:.2f} s max (floor {canary['floor_s']:.2f} s: {canary['ratio']:.1f}x;"
          f" step wait {STEP_WAIT} s)")
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (out / f"release-{stamp}.json").write_text(json.dumps({"bluegreen": bluegreen, "canary": canary, "met": met},
                                                          indent=2))
    print("targets met" if met else "targets MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
