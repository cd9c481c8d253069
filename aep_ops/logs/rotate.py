"""logrotate on one host: its file installed only after ``logrotate -d`` accepts it, then run with
its own state file.

The run is timestamped line by line on the host (``logrotate -v`` says "copying A to B" before a
copytruncate copies and "truncating A" after): the time between the two is the window in which
lines written to A are lost, reported per file as an upper bound.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from aep_ops.base.errors import StepFailed
from aep_ops.executors.files import remove_file, write_file

RUN_TIMEOUT = 3600
VALIDATE = ('logrotate -d -s "$1.aep-ops-dstate" -- "$1.aep-ops-new" 2>&1; rc=$?;'
            ' rm -f -- "$1.aep-ops-dstate"; exit $rc')
# Each output line stamped when the host's shell reads it; the exit status is logrotate's.
RUN = ('{ logrotate -v "$@" 2>&1; echo "aep-ops-exit $?"; } |'
       ' while IFS= read -r line; do echo "$(date +%s.%N) $line"; done')
# A process that still writes to a rotated file of $2 (a postrotate killed or failed before its
# signal) is signalled ($3) again and waited for ($4 polls of 50 ms): else it would write to a file
# nobody rotates, compresses or ships, for ever.
REOPEN_CHECK = """
pid=$(cat -- "$1" 2>/dev/null) || exit 0
case $pid in ''|*[!0-9]*) exit 0;; esac
kill -0 "$pid" 2>/dev/null || exit 0
n=0
while :; do
    stale=0
    for fd in /proc/"$pid"/fd/*; do
        t=$(readlink -- "$fd") || continue
        case $t in $2-[0-9]*) stale=1;; esac
    done
    [ $stale = 0 ] && exit 0
    if [ $n = 0 ]; then kill -"$3" "$pid" || exit 1; echo "aep-ops: pid $pid still wrote to a rotated $2: signalled"; fi
    n=$((n+1))
    [ $n -gt "$4" ] && { echo "aep-ops: pid $pid did not reopen $2" >&2; exit 1; }
    sleep 0.05
done
"""
_RENAMED = re.compile(r"renaming (\S+) to (\S+)$")
_COPYING = re.compile(r"copying (\S+) to (\S+)$")
_TRUNCATING = re.compile(r"truncating (\S+)$")


@dataclass
class RotateOutcome:
    """What one logrotate run did on one host."""

    host: str
    exit_status: int = 0
    rotated: list[dict[str, str]] = field(default_factory=list)
    loss_windows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)  # processes signalled again after logrotate

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "exit_status": self.exit_status, "rotated": self.rotated,
                "copytruncate_loss_windows": self.loss_windows, "errors": self.errors, "reopened": self.reopened}


def install(executor: Any, path: str, content: str) -> None:
    """Write the candidate beside ``path``, have ``logrotate -d`` read it, and only then move it in.
    A file logrotate rejects is removed and named with logrotate's own first error lines."""
    candidate = path + ".aep-ops-new"
    write_file(executor, candidate, content, "0644")
    result = executor.run(["sh", "-c", VALIDATE, "sh", path], timeout=120)
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    if not result.ok or errors:
        remove_file(executor, candidate)
        why = "; ".join(errors[:3]) or result.stderr_tail(2) or f"exit {result.exit_status}"
        raise StepFailed(f"{executor.target}: logrotate -d rejected the file for {path} (nothing installed): {why}")
    result = executor.run(["mv", "-f", "--", candidate, path], timeout=60)
    if not result.ok:
        raise StepFailed(f"{executor.target}: could not install {path}: {result.stderr_tail(1)}")


def run(executor: Any, host: str, config_path: str, state_file: str, *, force: bool = False) -> RotateOutcome:
    argv = ["sh", "-c", f'mkdir -p -- "$(dirname -- "$1")" && shift && {RUN}', "sh", state_file,
            *(["-f"] if force else []), "-s", state_file, "--", config_path]
    result = executor.run(argv, timeout=RUN_TIMEOUT)
    if not result.ok:
        raise StepFailed(f"{host}: could not run logrotate: {result.stderr_tail(2) or result.exit_status}")
    return parse(host, result.stdout)


def reopen_stragglers(executor: Any, host: str, sources: list[Any], reopen_timeout: int) -> list[str]:
    """After logrotate: each signalled process holds its live file, not a rotated one (what was
    done, as lines); StepFailed when a process does not reopen."""
    said = []
    for source in sources:
        if source.method != "create" or not (source.signal and source.pidfile) or source.reopen_command:
            continue
        for path in source.paths_on(host):
            result = executor.run(["sh", "-c", REOPEN_CHECK, "sh", source.pidfile.replace("{host}", host), path,
                                   source.signal, str(reopen_timeout * 20)], timeout=reopen_timeout + 60)
            if not result.ok:
                raise StepFailed(f"{host}: {result.stderr_tail(1) or result.exit_status}")
            said += [line for line in result.stdout.splitlines() if line.strip()]
    return said


def parse(host: str, output: str) -> RotateOutcome:
    """The stamped ``logrotate -v`` output as an outcome (rotations, copytruncate windows, errors)."""
    outcome = RotateOutcome(host)
    copying: dict[str, float] = {}
    for raw in output.splitlines():
        stamp, _, line = raw.partition(" ")
        try:
            when = float(stamp)
        except ValueError:
            continue
        line = line.strip()
        if line.startswith("aep-ops-exit "):
            outcome.exit_status = int(line.split()[1])
        elif line.startswith("error:") or line.startswith("aep-ops:"):
            outcome.errors.append(line)
        elif match := _RENAMED.match(line):
            outcome.rotated.append({"file": match[1], "rotated_to": match[2]})
        elif match := _COPYING.match(line):
            copying[match[1]] = when
            outcome.rotated.append({"file": match[1], "rotated_to": match[2]})
        elif (match := _TRUNCATING.match(line)) and match[1] in copying:
            window = max(0.0, when - copying.pop(match[1]))
            outcome.loss_windows.append({"file": match[1], "window_ms": round(window * 1000, 1)})
    return outcome
