"""Run the real CLI on a pseudo-terminal, as a person at a terminal sees it (stdout and stderr both
on the tty, interleaved), and hand back the text and the exit code."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from dataclasses import dataclass

from tests.conftest import BIN, REPO


@dataclass
class TtyRun:
    returncode: int
    text: str  # everything the terminal showed, "\r\n" turned into "\n"

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()


def run_on_tty(*args: str, tool: str = "inv", env: dict | None = None, timeout: float = 300,
               columns: int = 100) -> TtyRun:
    """``tool args...`` with stdin, stdout and stderr on one new pty of ``columns`` columns."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": str(columns), **(env or {})}
    proc = subprocess.Popen([str(BIN / tool), *args], cwd=REPO, env=full_env, stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True, start_new_session=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                raise AssertionError(f"{tool} {' '.join(args)} still running after {timeout} s:\n"
                                     + b"".join(chunks).decode(errors="replace")[-3000:])
            ready, _, _ = select.select([master], [], [], min(left, 1.0))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError as exc:  # EIO: every process holding the pty's other end has exited
                if exc.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            chunks.append(data)
        returncode = proc.wait(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return TtyRun(returncode, b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n"))
