"""A fleet whose logs are rotated and shipped: real sshd hosts, each with its own directory
(``BASE/HOST``, ``{host}`` in the configuration), a real writer process per host appending
sequence-numbered JSON lines to ``api.log`` and reopening it on USR2 (pid in ``api.pid``), and a
bucket in the test's own moto account (optionally behind the fault-injecting proxy).

Helpers read back what a user would check: every line in S3 (decompressed), the shipped and
unshipped files on each host, the sequence numbers of one host's lines wherever they are.
"""

from __future__ import annotations

import gzip
import json
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from aep_ops.testing.logwriter import LogWriter



@dataclass
class LogHost:
    name: str
    ssh: Any
    directory: Path
    writer: LogWriter | None = None

    @property
    def log(self) -> Path:
        return self.directory / "api.log"

    def rotated(self) -> list[Path]:
        return sorted(p for p in self.directory.glob("api.log-*") if p.is_file())

    def shipped(self) -> list[Path]:
        return sorted((self.directory / "shipped").glob("api.log-*"))


@dataclass
class LogFleet:
    base: Path
    hosts: list[LogHost]
    moto: Any
    identity: Any
    known_hosts: Any
    bucket: str = ""
    endpoint: str = ""
    writers: list[LogWriter] = field(default_factory=list)

    def config(self, env: str = "staging", *, production: bool = False, logs_extra: str = "",
               sources: str | None = None) -> str:
        hosts = "".join(f"      - {{name: {h.name}, address: {h.ssh.address}, port: {h.ssh.port}, user: {h.ssh.user},"
                        f" role: api}}\n" for h in self.hosts)
        base = self.base
        sources = sources if sources is not None else (
            f"        - {{name: api, kind: node-api, role: api, paths: ['{base}/{{host}}/api.log'],"
            f" pidfile: '{base}/{{host}}/api.pid', size: '1'}}\n")
        endpoint = self.endpoint or self.moto.endpoint_url
        return (f"environments:\n  {env}:\n    production: {'true' if production else 'false'}\n    backend: local\n"
                f"    aws: {{region: {self.moto.region}, endpoint_url: '{endpoint}'}}\n"
                f"    ssh: {{identity: '{self.identity}', known_hosts: '{self.known_hosts}', connect_timeout: 5}}\n"
                f"    hosts:\n{hosts}"
                f"    logs:\n      bucket: {self.bucket}\n"
                f"      config_path: '{base}/{{host}}/logrotate.conf'\n"
                f"      state_file: '{base}/{{host}}/logrotate.status'\n{logs_extra}"
                f"      sources:\n{sources}")

    def start_writers(self, rate: int = 20000) -> None:
        for host in self.hosts:
            host.writer = LogWriter(host.log, host.directory / "api.pid", rate=rate, host=host.name).start()

    def stop_writers(self) -> dict[str, int]:
        return {h.name: h.writer.stop() for h in self.hosts if h.writer is not None}

    def s3_objects(self) -> dict[str, bytes]:
        """Every object of the bucket: key -> its bytes as stored."""
        s3 = self.moto.client("s3")
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents") or []:
                out[item["Key"]] = s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
        return out

    def s3_lines(self, host: str) -> list[str]:
        """The lines of the host's shipped objects, decompressed, in key order."""
        lines = []
        for key, body in sorted(self.s3_objects().items()):
            if f"/{host}/" in key:
                data = gzip.decompress(body) if key.endswith(".gz") else body
                lines += data.decode().splitlines()
        return lines

    def seqs(self, lines: list[str]) -> list[int]:
        return [json.loads(line)["seq"] for line in lines if line.strip()]

    def stop(self) -> None:
        for host in self.hosts:
            if host.writer is not None:
                host.writer.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def start_log_fleet(count: int, ssh_host_factory: Any, moto: Any) -> LogFleet:
    """``count`` hosts (log1, log2...), their directories, and the bucket in ``moto``'s account."""
    base = Path(tempfile.mkdtemp(prefix="aep-logs-"))
    hosts = []
    for number in range(1, count + 1):
        name = f"log{number}"
        directory = base / name
        directory.mkdir()
        hosts.append(LogHost(name, ssh_host_factory(), directory))
    bucket = f"aep-logs-{uuid.uuid4().hex[:12]}"  # bucket names are global, in moto too
    moto.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": moto.region})
    return LogFleet(base, hosts, moto, ssh_host_factory.identity, ssh_host_factory.known_hosts, bucket=bucket)


@contextmanager
def configured_log_fleet(count: int, ssh_host_factory: Any, moto: Any, tmp_path: Path, monkeypatch: Any,
                         **config: Any) -> Iterator[LogFleet]:
    """A started fleet in ``moto``'s account, with AEP_OPS_CONFIG pointing at its configuration."""
    from tests.conftest import write_config

    moto.use_in(monkeypatch)
    fleet = start_log_fleet(count, ssh_host_factory, moto)
    try:
        write_config(tmp_path / "aep-ops.yaml", fleet.config(**config), monkeypatch)
        yield fleet
    finally:
        fleet.stop()


def next_second() -> None:
    """dateext names carry the second: two rotations of one file must not share one."""
    time.sleep(1.05 - (time.time() % 1))
