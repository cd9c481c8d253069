"""A real prometheus-node-exporter (Debian's package) serving only its textfile collector on
loopback, for tests that prove the metrics files are what Prometheus will scrape.

It runs in the foreground as a child of the test, on a port from the test allocator, its stderr
in a file (``log()``): node_exporter reports a family dropped for a differing HELP there, not in
the scrape. Missing node_exporter is an error naming the package, never a skip.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aep_ops.base.processes import stop_child
from aep_ops.testing.ports import free_port

BINARY = "prometheus-node-exporter"


@dataclass
class NodeExporter:
    directory: Path  # --collector.textfile.directory
    port: int
    log_path: Path
    _process: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self, timeout: float = 10) -> str:
        with urllib.request.urlopen(self.url, timeout=timeout) as answer:
            return answer.read().decode()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_child(process)


def start_node_exporter(directory: Path, log_path: Path, timeout: float = 30) -> NodeExporter:
    """node_exporter with only the textfile collector on ``directory``; returns once /metrics answers."""
    binary = shutil.which(BINARY) or f"/usr/bin/{BINARY}"
    if not Path(binary).is_file():
        raise RuntimeError(f"{BINARY} is not installed: apt-get install prometheus-node-exporter")
    exporter = NodeExporter(directory, free_port(), log_path)
    argv = [binary, f"--web.listen-address=127.0.0.1:{exporter.port}", "--collector.disable-defaults",
            "--collector.textfile", f"--collector.textfile.directory={directory}"]
    with open(log_path, "wb") as stderr:  # a file: nobody reads a pipe until exit
        exporter._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=stderr)
    try:
        _wait_answering(exporter, timeout)
    except BaseException:
        exporter.stop()
        raise
    return exporter


def _wait_answering(exporter: NodeExporter, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if exporter._process.poll() is not None:
            raise RuntimeError(f"{BINARY} exited with {exporter._process.returncode}: {exporter.log().strip()}")
        try:
            if "node_textfile_scrape_error" in exporter.scrape(timeout=2):
                return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{BINARY} did not answer on {exporter.url} within {timeout:g}s: {exporter.log()}")
        time.sleep(0.05)
