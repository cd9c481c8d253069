"""An application-like log writer process for the log rotation and shipping tests.

Why: rotation can only be shown not to lose or repeat a line against a real process that appends
fast and reopens its file on a signal, as pino-style Node loggers do on SIGUSR2.

``python -m aep_ops.testing.logwriter --path FILE --pidfile PIDFILE [--rate N] [--signal USR2]
[--count N] [--host NAME]`` appends JSON lines with ``seq`` 0, 1, 2... at ``--rate`` lines a second
(0: as fast as it can), in batches of whole lines, one os.write each on an O_APPEND descriptor. The
reopen signal only sets a flag: between two batches the path is opened anew and only then the old
descriptor closed, so every line goes to exactly one file. SIGTERM (or ``--count`` lines) ends the
current batch, closes and prints ``{"last_seq": N, "lines": N+1}``. The pidfile is written (temp +
rename) only once the file is open: seeing it means the writer is ready.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
MODE = 0o640
TICK = 0.004  # seconds between batches when paced: about 100 lines a batch at 25,000 lines/s
MAX_BATCH = 5000  # lines in one write, when catching up or unpaced
LINE = ('{"seq":%d,"time":"%s","level":30,"pid":%d,"host":%s,"msg":"request completed",'
        '"req":{"id":"req-%x","method":"%s","url":"/api/v1/orders/%d","remoteAddress":"10.0.%d.%d"},'
        '"res":{"statusCode":%d},"responseTime":%d}\n')
METHODS = ("GET", "GET", "GET", "POST", "GET", "PUT", "GET", "DELETE")
STATUSES = (200,) * 17 + (201, 404, 500)


def iso_now() -> str:
    """UTC now as ISO-8601 with milliseconds, like pino's isoTime."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)


def batch(first: int, n: int, pid: int, host: str) -> bytes:
    stamp = iso_now()
    return "".join([LINE % (s, stamp, pid, host, s, METHODS[s % 8], s % 9973, (s >> 8) & 255, s & 255,
                            STATUSES[s % 20], 1 + s % 97) for s in range(first, first + n)]).encode()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a short write (a signal mid-write) goes on on the same descriptor: the line stays whole
        view = view[os.write(fd, view):]


def write_pidfile(pidfile: str) -> None:
    temp = f"{pidfile}.{os.getpid()}.tmp"
    with open(temp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(temp, pidfile)


def run(path: str, pidfile: str, rate: int, reopen_signal: int, count: int | None, host: str) -> int:
    """Write until SIGTERM or ``count`` lines; the number of lines written."""
    flags = {"reopen": False, "stop": False}
    signal.signal(reopen_signal, lambda *_: flags.__setitem__("reopen", True))
    signal.signal(signal.SIGTERM, lambda *_: flags.__setitem__("stop", True))
    fd = os.open(path, OPEN_FLAGS, MODE)
    write_pidfile(pidfile)
    pid, host_json = os.getpid(), json.dumps(host)
    seq, start = 0, time.monotonic()
    while not flags["stop"] and (count is None or seq < count):
        if flags["reopen"]:
            flags["reopen"] = False  # first: a signal during the open asks for one more reopen
            new_fd = os.open(path, OPEN_FLAGS, MODE)
            os.close(fd)  # every line before the switch was written to it: os.write is synchronous
            fd = new_fd
        due = int((time.monotonic() - start) * rate) + 1 if rate else seq + MAX_BATCH
        n = min(due - seq, MAX_BATCH, (count - seq) if count is not None else MAX_BATCH)
        if n <= 0:
            time.sleep(TICK)  # pacing, not synchronisation
            continue
        write_all(fd, batch(seq, n, pid, host_json))
        seq += n
    os.close(fd)
    return seq


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aep_ops.testing.logwriter", description=__doc__.split("\n")[0])
    parser.add_argument("--path", required=True)
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--rate", type=int, default=25000, help="lines a second, 0 for as fast as possible")
    parser.add_argument("--signal", default="USR2", help="the reopen signal (USR2, HUP, ...)")
    parser.add_argument("--count", type=int, help="stop after this many lines")
    parser.add_argument("--host", default=socket.gethostname())
    args = parser.parse_args(argv)
    try:
        lines = run(args.path, args.pidfile, args.rate, signal_number(args.signal), args.count, args.host)
    except OSError as exc:
        print(f"logwriter: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"last_seq": lines - 1, "lines": lines}), flush=True)
    return 0


def signal_number(name: str) -> int:
    name = name.upper()
    return int(getattr(signal, name if name.startswith("SIG") else f"SIG{name}"))


class LogWriter:
    """The writer as a child process: ``start()`` returns once it is appending to ``path``."""

    def __init__(self, path: str | Path, pidfile: str | Path, rate: int = 25000, signal: str = "USR2",
                 count: int | None = None, host: str | None = None, timeout: float = 10.0) -> None:
        self.path, self.pidfile = Path(path), Path(pidfile)
        self.rate, self.signal, self.count, self.host, self.timeout = rate, signal, count, host, timeout
        self.result: dict[str, int] | None = None  # the writer's last line once stopped
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("LogWriter not started")
        return self._process.pid

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "aep_ops.testing.logwriter", "--path", str(self.path),
                "--pidfile", str(self.pidfile), "--rate", str(self.rate), "--signal", self.signal]
        argv += ["--count", str(self.count)] if self.count is not None else []
        return argv + (["--host", self.host] if self.host else [])

    def start(self) -> LogWriter:
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                                        os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(self.argv(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + self.timeout
        while not self._ready():
            if self._process.poll() is not None:
                _, err = self._process.communicate()
                raise RuntimeError(f"logwriter exited with {self._process.returncode}: {err.decode().strip()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"logwriter wrote no pidfile and no line to {self.path} within {self.timeout:g}s")
            time.sleep(0.005)
        return self

    def _ready(self) -> bool:
        try:
            return int(self.pidfile.read_text()) == self.pid and self.path.stat().st_size > 0
        except (OSError, ValueError):
            return False

    def reopen(self) -> None:
        """Send the reopen signal (after renaming ``path``, as logrotate does)."""
        os.kill(self.pid, signal_number(self.signal))

    def last_seq(self) -> int:
        """The seq of the last whole line in ``path`` now (-1 if none)."""
        with open(self.path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
            whole = f.read().rsplit(b"\n", 2)
        return json.loads(whole[-2])["seq"] if len(whole) >= 2 and whole[-2].strip() else -1

    def stop(self) -> int:
        """SIGTERM, wait, and the last seq written (-1 for none)."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        """Wait for the writer to end by itself (``count``), and the last seq written."""
        process = self._process
        if process is None:
            raise RuntimeError("LogWriter not started")
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"logwriter {process.pid} did not end within {self.timeout:g}s") from None
        if process.returncode != 0:
            raise RuntimeError(f"logwriter exited with {process.returncode}: {err.decode().strip()}")
        self.result = json.loads(out.decode().strip().splitlines()[-1])
        return self.result["last_seq"]

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()

    def __enter__(self) -> LogWriter:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self._process is not None and self._process.returncode is None:
            try:
                self.stop()
            finally:
                self.kill()


def sequence_report(lines: Iterable[str | bytes]) -> dict[str, Any]:
    """Which seq numbers a set of lines holds: ``missing`` (between 0 and ``max``), ``duplicates``,
    ``count`` of lines and ``invalid`` ones (not JSON with a seq: a torn line)."""
    seen: dict[int, int] = {}
    count = invalid = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            seq = json.loads(line)["seq"]
        except (ValueError, KeyError, TypeError):
            invalid += 1
            continue
        seen[seq] = seen.get(seq, 0) + 1
        count += 1
    top = max(seen, default=-1)
    return {"count": count, "max": top, "invalid": invalid, "missing": [s for s in range(top + 1) if s not in seen],
            "duplicates": sorted(s for s, n in seen.items() if n > 1)}


if __name__ == "__main__":
    sys.exit(main())
