"""``logs.ship`` of about 1 GB of realistic JSON log lines (gzip -6, rotated files of ~100 MB of
lines each, as logrotate leaves them, with the postrotate's index beside them) to S3 on a moto
server, verification included, against the floor measured in the same run: the same files put
directly with boto3's transfer manager at the same concurrency and part size, plus one HEAD each.

What aep-ops adds: the journal and lock, listing the files on their host, the SHA-256 of each
file computed on the host (``sha256sum`` per part), create-only puts that carry that checksum,
a HEAD with checksum mode per file compared with it, the manifest line and the move into
``shipped/``. Nothing is recompressed: the objects are the rotated files' own bytes (checked).

    .venv/bin/python bench/logship.py [--runs 7] [--gb 1.0] [--via local|ssh|both]

``local``: the files on this machine (role ``local``), measured in-process like the floor.
``ssh``: the same files on a real sshd host on a loopback address, read over SFTP (needs root
and sshd, as the tests do). The CLI's end-to-end time (``inv logs.ship``, interpreter start
included) is printed too. Runs alternate ours/floor; medians and ratios are printed. The target
is ours within 1.3x of the floor (local).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BIN = Path(sys.executable).parent
CACHE = Path("/tmp/aep-bench-logship")
PER_FILE = 100 * 1000 * 1000  # bytes of lines per rotated file
CONCURRENCY, PART_MB, THRESHOLD_MB = 4, 16, 64


def generate(gb: float) -> list[Path]:
    """Rotated files (cached between runs of the bench): pino-style request lines."""
    wanted = max(1, round(gb * 1e9 / PER_FILE))
    CACHE.mkdir(exist_ok=True)
    files = [CACHE / f"api.log-20261207-{1796600000 + n}.gz" for n in range(wanted)]
    rng = random.Random(7)
    seq, stamp = 0, 1796600000000
    for path in files:
        if path.exists():
            continue
        lines, size = [], 0
        while size < PER_FILE:
            stamp += rng.randint(0, 3)
            line = json.dumps({"level": rng.choice((30, 30, 30, 40, 50)), "time": stamp, "pid": 4242,
                               "hostname": "api-1", "seq": seq,
                               "req": {"id": f"req-{seq:010x}", "method": rng.choice(("GET", "POST", "PUT")),
                                       "url": f"/api/v1/items/{rng.randint(1, 99999)}",
                                       "remoteAddress": f"10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}"},
                               "res": {"statusCode": rng.choice((200, 200, 200, 201, 204, 404, 500))},
                               "responseTime": round(rng.random() * 250, 2), "msg": "request completed"})
            lines.append(line)
            size += len(line) + 1
            seq += 1
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6))
        tmp.rename(path)
        (path.with_suffix(".idx")).write_text(f"{len(lines)}\n{lines[0]}\n{lines[-1]}\n")
    return files


def stage(files: list[Path], directory: Path) -> None:
    """The rotated files and their index where logrotate would have left them (hard links)."""
    shutil.rmtree(directory, ignore_errors=True)
    (directory / ".aep-ops-index").mkdir(parents=True)
    for path in files:
        os.link(path, directory / path.name)
        shutil.copy(path.with_suffix(".idx"), directory / ".aep-ops-index" / (path.name[:-3] + ".idx"))


def floor(endpoint: str, files: list[Path], bucket: str) -> float:
    """A script's way: a client (made as aep-ops makes its one per run: botocore's models loaded
    once per process), the transfer manager, a HEAD each."""
    import boto3
    from boto3.s3.transfer import TransferConfig
    from s3transfer.manager import TransferManager

    from aep_ops.aws.clients import botocore_session

    config = TransferConfig(multipart_threshold=THRESHOLD_MB << 20, multipart_chunksize=PART_MB << 20,
                            max_concurrency=CONCURRENCY)
    started = time.perf_counter()
    s3 = boto3.session.Session(botocore_session=botocore_session(None)).client(
        "s3", endpoint_url=endpoint, region_name="eu-west-1")
    with TransferManager(s3, config) as manager:
        futures = [manager.upload(str(p), bucket, f"floor/{p.name}") for p in files]
        for future in futures:
            future.result()
    for path in files:
        s3.head_object(Bucket=bucket, Key=f"floor/{path.name}", ChecksumMode="ENABLED")
    return time.perf_counter() - started


def ours_in_process(env: str) -> float:
    from aep_ops import config
    from aep_ops.engine.runbook import get, load_all
    from aep_ops.engine.runner import run_runbook

    from aep_ops.base import log

    load_all()
    settings = config.load(env)
    log.configure(settings.state_dir, stream=open(os.devnull, "w"), tty=False)
    started = time.perf_counter()
    result = run_runbook(get("logs.ship"), settings, params={}, out=open(os.devnull, "w"))
    elapsed = time.perf_counter() - started
    if result.status != "succeeded":
        raise SystemExit(f"logs.ship {result.status}: {[s.error for s in result.steps if s.error]}")
    return elapsed


def ours_cli(env: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "inv"), "logs.ship", "--env", env], capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--via", choices=("local", "ssh", "both"), default="both")
    args = parser.parse_args()
    subprocess.run([sys.executable, str(REPO / "bench" / "precompile.py")], check=True)
    files = generate(args.gb)
    raw = sum(int(p.with_suffix(".idx").read_text().split("\n", 1)[0]) for p in files)
    size = sum(p.stat().st_size for p in files)
    print(f"{len(files)} rotated files, {size / 1e6:.0f} MB gzip, {raw} lines (~{len(files) * PER_FILE / 1e9:.1f} GB)")
    with Bench(args.via) as bench:
        bench.measure(files, args.runs, size)


class Bench:
    """A moto server process, a state directory and configuration; sshd when asked for."""

    def __init__(self, via: str) -> None:
        self.via = via

    def __enter__(self) -> "Bench":
        import boto3

        from aep_ops.testing.ports import free_port
        from aep_ops.testing.sshd import SshFleet

        self.base = Path(tempfile.mkdtemp(prefix="aep-logship-bench-"))
        port = free_port()
        self.moto = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        for key, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                           "AEP_OPS_STATE_DIR": str(self.base / "state"), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
                           "AEP_OPS_CONFIG": str(self.base / "aep-ops.yaml")}.items():
            os.environ[key] = value
        self.s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="eu-west-1")
        deadline = time.monotonic() + 20
        while True:
            try:
                self.s3.list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.fleet = SshFleet(self.base / "sshd") if self.via != "local" else None
        self.host = self.fleet.add() if self.fleet else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fleet:
            self.fleet.close()
        self.moto.terminate()
        self.moto.wait()
        shutil.rmtree(self.base, ignore_errors=True)

    def config(self, bucket: str) -> None:
        logs = (f"    logs:\n      bucket: {bucket}\n      concurrency: {CONCURRENCY}\n      part_size_mb: {PART_MB}\n"
                f"      multipart_threshold_mb: {THRESHOLD_MB}\n      sources:\n")
        text = ("environments:\n  local:\n    production: false\n    backend: local\n"
                f"    aws: {{region: eu-west-1, endpoint_url: '{self.endpoint}'}}\n" + logs +
                f"        - {{name: api, kind: plain, role: local, paths: ['{self.base}/local/api.log']}}\n")
        if self.host is not None:
            h = self.host
            text += ("  remote:\n    production: false\n    backend: local\n"
                     f"    aws: {{region: eu-west-1, endpoint_url: '{self.endpoint}'}}\n"
                     f"    ssh: {{identity: '{self.fleet.identity}', known_hosts: '{self.fleet.known_hosts}'}}\n"
                     f"    hosts:\n      - {{name: api-1, address: {h.address}, port: {h.port}, user: {h.user},"
                     f" role: api}}\n" + logs +
                     f"        - {{name: api, kind: plain, role: api, paths: ['{self.base}/remote/api.log']}}\n")
        Path(os.environ["AEP_OPS_CONFIG"]).write_text(text)

    def fresh_bucket(self, n: int) -> str:
        name = f"bench-logs-{n}"
        self.s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        return name

    def drop_bucket(self, name: str) -> None:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents") or []:
                self.s3.delete_object(Bucket=name, Key=item["Key"])
        self.s3.delete_bucket(Bucket=name)

    def measure(self, files: list[Path], runs: int, size: int) -> None:
        kinds = ["local"] + (["remote"] if self.via != "local" else [])
        if self.via == "ssh":
            kinds = ["remote"]
        times: dict[str, list[float]] = {"floor": [], "cli": [], **{k: [] for k in kinds}}
        counter = 0
        for run in range(runs):
            for kind in ["floor", *kinds, "cli"]:
                counter += 1
                bucket = self.fresh_bucket(counter)
                self.config(bucket)
                (self.base / "state" / "logs" / f"shipped-{kind}.jsonl").unlink(missing_ok=True)
                for env in ("local", "remote"):
                    (self.base / "state" / "logs" / f"shipped-{env}.jsonl").unlink(missing_ok=True)
                directory = self.base / ("remote" if kind == "remote" else "local")
                stage(files, directory)
                if kind == "floor":
                    elapsed = floor(self.endpoint, files, bucket)
                elif kind == "cli":
                    elapsed = ours_cli("local")
                else:
                    elapsed = ours_in_process(kind)
                    self.check_same_bytes(files, bucket, kind)
                times[kind].append(elapsed)
                print(f"  run {run + 1} {kind:<6} {elapsed:6.2f} s", flush=True)
                self.drop_bucket(bucket)
        base = statistics.median(times["floor"])
        print(f"floor (a boto3 client, its transfer manager at concurrency {CONCURRENCY}, + HEAD each): {base:.2f} s"
              f" ({size / 1e6 / base:.0f} MB/s)")
        for kind in [*kinds, "cli"]:
            median = statistics.median(times[kind])
            label = {"local": "logs.ship, files on this machine", "remote": "logs.ship, files over SSH/SFTP",
                     "cli": "inv logs.ship (process start included)"}[kind]
            paired = statistics.median(t / f for t, f in zip(times[kind], times["floor"]))
            print(f"{label}: {median:.2f} s = {median / base:.2f}x the floor (median of the runs' own ratios:"
                  f" {paired:.2f}x)")

    def check_same_bytes(self, files: list[Path], bucket: str, kind: str) -> None:
        """No recompression: each object is byte for byte the rotated file (checked on the first)."""
        key = next(k["Key"] for k in self.s3.list_objects_v2(Bucket=bucket)["Contents"] if k["Key"].endswith(
            files[0].name))
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if body != files[0].read_bytes():
            raise SystemExit(f"{kind}: the object {key} is not the rotated file's bytes")


if __name__ == "__main__":
    main()
