"""The systemd units of a job: a oneshot service that runs the runbook as the CLI would, and a
timer that starts it. Pure text from a Job; aep_ops.timers.analyze checks it with systemd.

Choices an on-call engineer would ask about:
- ``Persistent=true`` so a run missed while the host was down happens at boot; a small
  ``RandomizedDelaySec`` with ``FixedRandomDelay=true`` (the same offset every time) because a
  large random delay plus Persistent rarely runs on hosts that reboot often (systemd#21166).
- ``SuccessExitStatus=3``: "locked by another run" means the work is being done, not a failure.
- ``KillMode=mixed``: a stop (or TimeoutStartSec) sends SIGTERM to aep-ops only, which records
  the interruption and stops what the step started; whatever is left is killed after TimeoutStopSec.
- Hardening (HARDENING): the exposure score ``systemd-analyze security --offline=yes`` gives is
  checked against EXPOSURE_BAR before install."""

from __future__ import annotations

import re
from aep_ops.base.errors import ConfigError
from aep_ops.engine.markdown import RUNBOOKS_DIR
from aep_ops.timers.jobs import Job

EXPOSURE_BAR = 4.0  # systemd-analyze calls up to 4.9 "OK" and from 5.0 "MEDIUM"; every unit renders at 3.4
STOP_SECONDS = 180  # after SIGTERM: time for a step to stop what it started (a scratch cluster)
SAFE_PATH = re.compile(r"/[A-Za-z0-9/._@+,=:~-]*")
SAFE_WORD = re.compile(r"[A-Za-z0-9._-]+")
OWNER_LINE = "# aep-ops environment: {env}"  # how timers.install knows its own units (see install.owned)
HEADER = ("# Written by aep-ops (inv timers.render / timers.install --env {env}): do not edit here;\n"
          "# change the runbook's front matter or timers.jobs in the configuration, then install again.\n"
          + OWNER_LINE + "\n")

# Options that cost the runbooks nothing: they run as the configured user, talk to PostgreSQL,
# SSH, S3 and HTTPS, start and stop PostgreSQL clusters, and signal processes whose logs they rotate.
HARDENING = (
    "NoNewPrivileges=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectSystem=full",
    "ProtectHome=read-only",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallErrorNumber=EPERM",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "CapabilityBoundingSet=CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_KILL CAP_SETUID"
    " CAP_SETGID CAP_SYS_PTRACE",
    "KeyringMode=private",
    "UMask=0077",
)
ALWAYS_WRITABLE = ("-/etc/aep-ops",)  # logs.rotate installs this machine's logrotate file there


def service(job: Job, *, command: str, state_dir: str, user: str, config_file: str | None,
            writable: list[str]) -> str:
    words = " ".join(exec_word(w) for w in [command, *job.arguments()])
    environment = [f"AEP_OPS_STATE_DIR={state_dir}", f"AEP_OPS_JOB={job.name}"]
    if config_file:
        environment.append(f"AEP_OPS_CONFIG={config_file}")
    unit = [f"Description=aep-ops {job.runbook} on {job.env} (job {job.name})",
            f"Documentation=file://{RUNBOOKS_DIR}/{job.runbook}.md",
            "After=network-online.target", "Wants=network-online.target"]
    if job.then:
        unit.append(f"OnSuccess=aep-ops-{job.env}-{job.then}.service")
    body = ["Type=oneshot", f"User={unit_word('timers.user', user)}",
            f"WorkingDirectory={unit_path('state_dir', state_dir)}",
            *(f'Environment="{env_value(e)}"' for e in environment),
            f"ExecStart={words}",
            "SuccessExitStatus=3",
            f"TimeoutStartSec={job.timeout_seconds}",
            f"TimeoutStopSec={STOP_SECONDS}",
            "KillMode=mixed",
            "StandardInput=null",
            f"SyslogIdentifier={job.unit}",
            *HARDENING,
            "ReadWritePaths=" + " ".join([unit_path("state_dir", state_dir), *ALWAYS_WRITABLE,
                                          *(unit_path("timers.read_write_paths", p) for p in writable)])]
    approved = ("# --yes: this job's production steps were approved when its timer was installed"
                " (timers.install --yes; see the audit log)\n") if job.approve else ""
    return (HEADER.format(env=job.env) + approved + "[Unit]\n" + "\n".join(unit) + "\n\n[Service]\n"
            + "\n".join(body) + "\n")


def timer(job: Job) -> str:
    return (HEADER.format(env=job.env) + "[Unit]\n"
            f"Description=Schedule of aep-ops {job.runbook} on {job.env} (job {job.name})\n\n"
            "[Timer]\n"
            f"OnCalendar={job.schedule}\n"
            "Persistent=true\n"
            f"RandomizedDelaySec={job.randomized_delay_seconds}\n"
            "FixedRandomDelay=true\n"
            f"Unit={job.unit}.service\n\n"
            "[Install]\n"
            "WantedBy=timers.target\n")


def unit_files(jobs: list[Job], **service_args: object) -> dict[str, str]:
    """File name -> text for every job: a service each, a timer for each scheduled one (a job
    started by another's success has none)."""
    files: dict[str, str] = {}
    for job in jobs:
        files[f"{job.unit}.service"] = service(job, **service_args)  # type: ignore[arg-type]
        if job.schedule:
            files[f"{job.unit}.timer"] = timer(job)
    return files


def exec_word(word: str) -> str:
    """One ExecStart argument, quoted so systemd hands it over unchanged: no splitting at spaces,
    no $VARIABLE expansion ($$), no %-specifiers (%%)."""
    if not word.isprintable():
        raise ConfigError(f"a scheduled command holds a control character: {word[:40]!r}")
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def env_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def unit_path(key: str, value: str) -> str:
    if not SAFE_PATH.fullmatch(str(value)):
        raise ConfigError(f"{key}: {str(value)[:60]!r} cannot go into a unit file as it is: use an absolute path"
                          " of letters, digits and / . _ - @ + , = : ~")
    return str(value)


def unit_word(key: str, value: str) -> str:
    if not SAFE_WORD.fullmatch(str(value)):
        raise ConfigError(f"{key}: {str(value)[:40]!r} is not a user name (letters, digits, . _ -)")
    return str(value)

