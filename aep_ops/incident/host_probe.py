"""What ``incident.diagnose`` reads on each host: one read-only shell script, sent once, whose
sections are marked so that a missing tool leaves its fact unknown instead of shifting the
others (as fleet.facts does), and the parser that turns its output into facts.

The script runs under ``timeout -k 1 N`` on the host, so a stuck ``df`` on a dead NFS mount
dies there too; the log globs and the error pattern arrive as positional arguments of
``sh -c`` (never spliced into the script), and grep gets the pattern behind ``-e``.
"""

from __future__ import annotations

from typing import Any

SCRIPT = "\n".join([
    'since=$1; pattern=$2; shift 2',
    'echo @@clock; date +%s.%N',
    'echo @@loadavg; cat /proc/loadavg 2>/dev/null',
    'echo @@nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN',
    'echo @@stat1; head -n 1 /proc/stat 2>/dev/null; sleep 0.2; echo @@stat2; head -n 1 /proc/stat 2>/dev/null',
    "echo @@meminfo; grep -E '^(MemTotal|MemAvailable|SwapTotal|SwapFree):' /proc/meminfo 2>/dev/null",
    'echo @@df; df -P -k 2>/dev/null',
    'echo @@dfi; df -P -i 2>/dev/null',
    'echo @@ps; ps -eo pid,user,pcpu,pmem,rss,etimes,comm --sort=-pcpu 2>/dev/null | head -n 11',
    'echo @@failed-units',
    'if command -v systemctl >/dev/null 2>&1; then'
    ' systemctl list-units --state=failed --no-legend --plain --no-pager 2>/dev/null; echo "@@rc=$?"; fi',
    'echo @@oom',
    'if command -v journalctl >/dev/null 2>&1 && journalctl -k -q --no-pager -n 1 >/dev/null 2>&1; then'
    ' journalctl -k -q --no-pager -o short-iso --since "-${since}min" 2>/dev/null;'
    ' else dmesg 2>/dev/null; fi | grep -iE "out of memory|oom-kill|killed process" | tail -n 20',
    'echo @@ports; ss -Htln 2>/dev/null || netstat -tln 2>/dev/null',
    'echo @@ntp; timedatectl show -p NTPSynchronized --value 2>/dev/null',
    'echo @@logs',
    'for g in "$@"; do for f in $g; do [ -f "$f" ] || continue; echo "@@log $f";'
    ' tail -n 2000 "$f" 2>/dev/null | grep -E -e "$pattern" | tail -n 50; done; done',
    'echo @@end',
])

IGNORED_FILESYSTEMS = {"tmpfs", "devtmpfs", "udev", "shm", "none", "proc", "sysfs", "cgroup", "cgroup2"}
IGNORED_MOUNTS = ("/proc", "/sys", "/dev", "/run")


def host_argv(*, deadline: float, since_minutes: int, pattern: str, globs: list[str] | tuple[str, ...]) -> list[str]:
    """The command sent to a host: the script under ``timeout`` (killed 1 s after TERM)."""
    seconds = max(1, int(deadline))
    return ["timeout", "-k", "1", str(seconds), "sh", "-c", SCRIPT, "aep-diagnose", str(max(1, since_minutes)),
            pattern, *globs]


def sections(stdout: str) -> dict[str, list[str]]:
    """``@@name`` markers -> the lines under each (a log's section is ``log /path``)."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for raw in stdout.splitlines():
        line = raw.rstrip("\n")
        if line.startswith("@@rc="):
            continue  # an exit status, read by _failed_units from the whole output
        if line.startswith("@@"):
            current = found.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line)
    return found


def parse(stdout: str, *, sent_at: float, answered_at: float) -> dict[str, Any]:
    """The host's facts; anything missing or garbled is None (unknown), never zero."""
    s = sections(stdout)
    facts: dict[str, Any] = {
        "clock_offset_ms": _clock_offset(s.get("clock"), sent_at, answered_at),
        "cpus": _int(_first(s.get("nproc"))),
        "load": _load(s.get("loadavg")),
        "cpu_percent": _cpu(s.get("stat1"), s.get("stat2")),
        "memory": _memory(s.get("meminfo") or []),
        "disks": _df(s.get("df") or [], "space"),
        "inodes": _df(s.get("dfi") or [], "inodes"),
        "top_processes": _processes(s.get("ps") or []),
        "failed_units": _failed_units(stdout, s.get("failed-units")),
        "oom_kills": list(s.get("oom") or []),
        "listening_ports": _ports(s.get("ports") or []),
        "ntp_synchronized": {"yes": True, "no": False}.get(_first(s.get("ntp")) or ""),
        "log_errors": {name[4:]: lines for name, lines in s.items() if name.startswith("log ")},
        "complete": "end" in s,
    }
    return facts


def _first(lines: list[str] | None) -> str | None:
    return lines[0].strip() if lines else None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _clock_offset(lines: list[str] | None, sent_at: float, answered_at: float) -> float | None:
    """How far the host's clock lies outside the window in which it read it (0 inside it): the
    uncertainty is the script's run time, a few hundred milliseconds."""
    try:
        remote = float(_first(lines) or "")
    except ValueError:
        return None
    if remote < sent_at:
        return round((remote - sent_at) * 1000, 1)
    if remote > answered_at:
        return round((remote - answered_at) * 1000, 1)
    return 0.0


def _load(lines: list[str] | None) -> list[float] | None:
    try:
        return [float(x) for x in (_first(lines) or "").split()[:3]] or None
    except ValueError:
        return None


def _cpu(first: list[str] | None, second: list[str] | None) -> float | None:
    """Busy percent between two ``cpu`` lines of /proc/stat (idle and iowait are not busy)."""
    try:
        a = [int(x) for x in (_first(first) or "").split()[1:]]
        b = [int(x) for x in (_first(second) or "").split()[1:]]
    except ValueError:
        return None
    if len(a) < 4 or len(b) < 4:
        return None
    total = sum(b) - sum(a)
    idle = (b[3] + (b[4] if len(b) > 4 else 0)) - (a[3] + (a[4] if len(a) > 4 else 0))
    return round(100.0 * (total - idle) / total, 1) if total > 0 else 0.0


def _memory(lines: list[str]) -> dict[str, Any] | None:
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        number = _int(rest.split()[0] if rest.split() else None)
        if number is not None:
            values[key.strip()] = number
    total, available = values.get("MemTotal"), values.get("MemAvailable")
    if not total or available is None:
        return None
    swap_total, swap_free = values.get("SwapTotal") or 0, values.get("SwapFree") or 0
    return {"total_kb": total, "available_kb": available,
            "used_percent": round(100.0 * (total - available) / total, 1),
            "swap_total_kb": swap_total,
            "swap_used_percent": round(100.0 * (swap_total - swap_free) / swap_total, 1) if swap_total else 0.0}


def _df(lines: list[str], what: str) -> list[dict[str, Any]]:
    """``df -P`` rows of real volumes, one per mount point."""
    rows, seen = [], set()
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < 6 or not parts[4].rstrip("%").isdigit():
            continue
        filesystem, mount = parts[0], " ".join(parts[5:])
        if filesystem in IGNORED_FILESYSTEMS or mount in seen or \
                any(mount == m or mount.startswith(m + "/") for m in IGNORED_MOUNTS):
            continue
        seen.add(mount)
        rows.append({"mount": mount, "filesystem": filesystem, "used_percent": int(parts[4].rstrip("%")),
                     ("size_kb" if what == "space" else "inodes"): _int(parts[1]),
                     ("available_kb" if what == "space" else "free"): _int(parts[3])})
    return rows


def _processes(lines: list[str]) -> list[dict[str, Any]]:
    rows = []
    for line in lines[1:]:
        parts = line.split(None, 6)
        if len(parts) < 7 or not parts[0].isdigit():
            continue
        rows.append({"pid": int(parts[0]), "user": parts[1], "cpu_percent": _float(parts[2]),
                     "memory_percent": _float(parts[3]), "rss_kb": _int(parts[4]), "seconds": _int(parts[5]),
                     "command": parts[6]})
    return rows


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _failed_units(stdout: str, lines: list[str] | None) -> list[str] | None:
    """Failed systemd units; None when systemd could not be asked (no systemctl, not booted with it)."""
    if lines is None or "@@rc=0" not in stdout:
        return None
    return [line.split()[0] for line in lines if line.split() and line.split()[0] != "●"]


def _ports(lines: list[str]) -> list[int]:
    """Listening TCP ports from ``ss -Htln`` (local address is the 4th column) or ``netstat -tln``."""
    ports = set()
    for line in lines:
        parts = line.split()
        if parts[:1] == ["tcp"] or parts[:1] == ["tcp6"]:
            local = parts[3] if len(parts) > 3 else ""
        elif parts[:1] == ["LISTEN"]:
            local = parts[3] if len(parts) > 3 else ""
        else:
            continue
        port = local.rsplit(":", 1)[-1]
        if port.isdigit():
            ports.add(int(port))
    return sorted(ports)
