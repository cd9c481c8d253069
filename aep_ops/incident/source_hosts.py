"""One source per host: the probe script over SSH (paramiko, host keys verified), bounded by
the diagnosis's deadline at every stage: the TCP connect, the banner, authentication (each
given at most the time left) and the command (``timeout -k`` on the host, the channel's
deadline here). ``abort`` closes the connection, a connect in progress included."""

from __future__ import annotations

import time
from typing import Any

from aep_ops.base.errors import AepError, CommandTimeout, HostKeyError
from aep_ops.base.redact import redact
from aep_ops.incident import host_probe
from aep_ops.incident.host_rules import host_findings
from aep_ops.incident.model import CRITICAL, ERROR, OK, PARTIAL, TIMEOUT, Finding, SourceResult
from aep_ops.incident.settings import IncidentConfig


class HostSource:
    def __init__(self, settings: Any, host: Any, cfg: IncidentConfig, *, since_seconds: float) -> None:
        from aep_ops.fleet.inventory import executor_for

        self.host, self.cfg, self.since_seconds = host, cfg, since_seconds
        self.name = f"host:{host.name}"
        self.executor = executor_for(settings, host)  # identity and known_hosts checked here: exit 2, not a finding
        self.executor.connect_timeout = min(self.executor.connect_timeout, cfg.deadline)

    def collect(self, deadline_at: float) -> SourceResult:
        since_epoch = time.time() - self.since_seconds
        argv = host_probe.host_argv(deadline=self.cfg.deadline, since_minutes=round(self.since_seconds / 60),
                                    pattern=self.cfg.error_pattern, globs=self.cfg.app_logs)
        try:
            self.executor.connect_timeout = max(0.1, min(self.executor.connect_timeout,
                                                         deadline_at - time.monotonic()))
            result = self.executor.run(argv, timeout=max(0.1, deadline_at - time.monotonic()))
        except CommandTimeout as exc:
            return self._failed(TIMEOUT, str(exc), "did not answer within the deadline")
        except HostKeyError as exc:
            return self._failed(ERROR, str(exc), "its SSH host key could not be verified")
        except AepError as exc:
            return self._failed(ERROR, str(exc), "unreachable")
        finally:
            self.executor.close()
        answered = time.time()
        facts = host_probe.parse(result.stdout, sent_at=answered - result.duration, answered_at=answered)
        out = SourceResult(self.name, OK if result.ok and facts["complete"] else PARTIAL, data={
            "host": self.host.name, "role": self.host.role, "target": self.host.target, **facts})
        out.raw = {"probe.txt": result.stdout, **({"stderr.txt": result.stderr} if result.stderr.strip() else {})}
        if not result.ok:
            out.error = redact(result.describe())
        out.findings = host_findings(self.name, self.host, facts, self.cfg, since_epoch)
        return out

    def abort(self) -> None:
        self.executor.close()

    def _failed(self, status: str, error: str, what: str) -> SourceResult:
        error = redact(error)
        finding = Finding(CRITICAL, self.name, f"host {self.host.name} {what}: {error}",
                          f"an answer within {self.cfg.deadline:g} s (incident.deadline_seconds)",
                          where=self.host.name)
        return SourceResult(self.name, status, data={"host": self.host.name, "role": self.host.role,
                                                     "target": self.host.target}, error=error, findings=[finding])
