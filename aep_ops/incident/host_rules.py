"""A host's facts -> findings: each rule names its threshold (and the configuration key that
sets it) and the runbook that addresses what it found. Pure: table-driven tests feed facts in."""

from __future__ import annotations

from typing import Any

from aep_ops.incident.model import CRITICAL, INFO, WARNING, Finding
from aep_ops.incident.settings import IncidentConfig

ERROR_LINES_SHOWN = 5


def host_findings(source: str, host: Any, facts: dict[str, Any], cfg: IncidentConfig,
                  since_epoch: float) -> list[Finding]:
    """Everything wrong on one host that its facts show."""
    t, env, role = cfg.host, cfg.env_name, host.role
    key = "incident.host"
    found: list[Finding] = []

    def add(severity: str, what: str, threshold: str, runbook: str = "", command: str = "", **details: Any) -> None:
        found.append(Finding(severity, source, what, threshold, runbook, command, where=host.name, details=details))

    restart = _restart_command(env, role)
    load, cpus = facts.get("load"), facts.get("cpus")
    if load and cpus:
        percent = 100.0 * load[0] / cpus
        if percent > t.load_percent:
            add(WARNING, f"load {load[0]:g} on {cpus} CPU(s) ({percent:.0f}% of the CPUs)",
                f"load > {t.load_percent}% of the CPUs ({key}.load_percent)", load=load, cpus=cpus)
    cpu = facts.get("cpu_percent")
    if cpu is not None and cpu > t.cpu_percent:
        top = (facts.get("top_processes") or [{}])[0]
        add(WARNING, f"CPU {cpu:.0f}% busy" + (f"; top: {top.get('command')} (pid {top.get('pid')})" if top else ""),
            f"CPU busy > {t.cpu_percent}% ({key}.cpu_percent)", cpu_percent=cpu)
    memory = facts.get("memory") or {}
    if memory.get("used_percent", 0) > t.memory_percent:
        add(CRITICAL if memory["used_percent"] >= 98 else WARNING, f"memory {memory['used_percent']:.0f}% in use",
            f"memory in use > {t.memory_percent}% ({key}.memory_percent)", **memory)
    if memory.get("swap_used_percent", 0) > t.swap_percent:
        add(WARNING, f"swap {memory['swap_used_percent']:.0f}% in use",
            f"swap in use > {t.swap_percent}% ({key}.swap_percent)")
    for what, rows, limit, name in (("space", facts.get("disks"), t.disk_percent, "disk_percent"),
                                    ("inodes", facts.get("inodes"), t.inodes_percent, "inodes_percent")):
        for row in rows or []:
            if row["used_percent"] >= limit:
                severity = CRITICAL if row["used_percent"] >= t.critical_percent else WARNING
                add(severity, f"{row['mount']}: {row['used_percent']}% of its {what} used",
                    f"{what} used >= {limit}% ({key}.{name}); critical from {t.critical_percent}%",
                    "logs.rotate" if what == "space" else "", f"inv logs.rotate --env {env}" if what == "space"
                    else "", mount=row["mount"], used_percent=row["used_percent"])
    failed = facts.get("failed_units")
    for unit in failed or []:
        is_service = unit in (cfg.service_unit, f"{cfg.service_unit}.service")
        add(CRITICAL if is_service else WARNING, f"systemd unit {unit} failed",
            "a failed unit" + (" (the API service: incident.service_unit)" if is_service else ""),
            "service.restart" if is_service else "", restart if is_service else "", unit=unit)
    if facts.get("oom_kills"):
        add(CRITICAL, f"{len(facts['oom_kills'])} OOM kill line(s) in the kernel log: {facts['oom_kills'][-1][:160]}",
            "any OOM kill in the window", "service.restart", restart, lines=facts["oom_kills"])
    missing = [p for p in cfg.expected_ports if p not in (facts.get("listening_ports") or [])]
    if missing and facts.get("listening_ports") is not None:
        add(CRITICAL, f"nothing listens on port(s) {', '.join(map(str, missing))}",
            "incident.expected_ports", "service.restart", restart, missing=missing)
    offset = facts.get("clock_offset_ms")
    if offset is not None and abs(offset) > t.clock_offset_ms:
        add(WARNING, f"clock {offset:+.0f} ms off this machine's", f"|offset| > {t.clock_offset_ms} ms"
            f" ({key}.clock_offset_ms)", offset_ms=offset)
    if facts.get("ntp_synchronized") is False:
        add(WARNING, "clock not synchronised (NTPSynchronized=no)", "timedatectl NTPSynchronized")
    for path, lines in (facts.get("log_errors") or {}).items():
        recent = recent_lines(lines, since_epoch)
        if recent:
            shown = recent[-ERROR_LINES_SHOWN:]
            add(WARNING, f"{len(recent)} error line(s) in {path}; last: {shown[-1][:200]}",
                "lines matching incident.error_pattern since the window began", "",
                f"inv logs.fetch --env {env}", path=path, lines=shown)
    if not facts.get("complete", True):
        add(INFO, "the host's probe did not finish (some facts are missing)", "every section answered")
    return found


def recent_lines(lines: list[str], since_epoch: float) -> list[str]:
    """Lines stamped at or after ``since_epoch``; a line without a readable time is kept (it may
    be recent: better shown than hidden)."""
    from aep_ops.logs.linetime import line_time

    kept = []
    for line in lines:
        when = line_time(line)
        if when is None or when >= since_epoch:
            kept.append(line)
    return kept


def _restart_command(env: str, role: str | None) -> str:
    return f"inv service.restart --env {env} --role {role}" if role else f"inv service.restart --env {env} --role ROLE"
