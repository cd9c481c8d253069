"""One chat command carried out by the ``aep-ops`` command itself, in its own process: the same
parser, lock, journal, step deadlines (SIGALRM needs a main thread) and masking as the CLI, and a
runbook that crashes or hangs takes no other command with it. The chat identity goes in
AEP_OPS_ACTOR; an approved request's run id in AEP_OPS_APPROVED_RUN (the engine checks and
consumes the approval). Progress is read from the JSON log lines the process writes on stderr."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

MAX_OUTPUT = 1 << 20  # of stdout kept (a listing); the rest is read and dropped


@dataclass
class ChildResult:
    code: int
    stdout: str
    last_line: str  # the last plain line on stderr: the outcome, or the one-line error
    run_id: str | None = None
    events: list[dict] = field(default_factory=list)


class Children:
    """The processes running now, so that stopping the service stops them cleanly (SIGTERM:
    each records its run as interrupted and releases its lock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()

    def run(self, words: list[str], *, actor: str, approved_run: str | None = None,
            on_event: Callable[[dict], None] = lambda e: None) -> ChildResult:
        env = {k: v for k, v in os.environ.items() if k not in ("AEP_OPS_APPROVED_RUN", "AEP_OPS_ACTOR")}
        env["AEP_OPS_ACTOR"] = actor
        if approved_run:
            env["AEP_OPS_APPROVED_RUN"] = approved_run
        proc = subprocess.Popen([sys.executable, "-m", "aep_ops", *words], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                                errors="replace", start_new_session=True)
        with self._lock:
            self._procs.add(proc)
        out: list[str] = []
        reader = threading.Thread(target=_collect, args=(proc.stdout, out), daemon=True)
        reader.start()
        result = ChildResult(code=-1, stdout="", last_line="")
        try:
            for line in proc.stderr:  # type: ignore[union-attr]
                _take(line, result, on_event)
            result.code = proc.wait()
        finally:
            with self._lock:
                self._procs.discard(proc)
        reader.join()
        result.stdout = "".join(out)
        return result

    def stop_all(self, grace: float) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()


def _take(line: str, result: ChildResult, on_event: Callable[[dict], None]) -> None:
    text = line.strip()
    if not text:
        return
    if text.startswith("{"):
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if isinstance(event, dict):
            result.run_id = result.run_id or event.get("run_id")
            if event.get("event") in ("run.start", "step.start", "step.done", "step.progress", "run.finish"):
                result.events.append(event)
                on_event(event)
            return
    result.last_line = text


def _collect(stream, out: list[str]) -> None:
    size = 0
    for chunk in iter(lambda: stream.read(65536), ""):
        if size < MAX_OUTPUT:
            out.append(chunk[:MAX_OUTPUT - size])
            size += len(chunk)
