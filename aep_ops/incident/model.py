"""What a diagnosis is made of: one ``SourceResult`` per source (a host, the database, the
application, AWS), each with its status and elapsed time so that missing data shows (sos#407:
a collector that fails quietly hides the one fact the on-call needed), and ``Finding``s ranked
by severity, each naming the threshold that fired and the runbook that addresses it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CRITICAL, WARNING, INFO = "critical", "warning", "info"
SEVERITIES = (CRITICAL, WARNING, INFO)  # most severe first

# A source's status: it answered (ok), it ran but could not read everything (partial), it
# failed (error), it did not answer by its deadline (timeout), or it has nothing to look at
# here (skipped: no hosts of that role, no AWS in a local environment).
OK, PARTIAL, ERROR, TIMEOUT, SKIPPED = "ok", "partial", "error", "timeout", "skipped"


@dataclass(frozen=True)
class Finding:
    """Something wrong (or worth knowing), where, the rule that fired, and what to run."""

    severity: str  # critical | warning | info
    source: str  # the SourceResult's name: "postgres", "host:web-1", "app", "aws"
    what: str  # one line: "3 sessions blocked behind pid 4242 for 95 s"
    threshold: str  # the rule that fired: "blocked > 30 s (incident.postgres.blocked_seconds)"
    runbook: str = ""  # the runbook that addresses it: "db.terminate"
    command: str = ""  # the exact command to run: "inv db.terminate --env prod --pid 4242 --backend-start ..."
    where: str = ""  # host, database, target group ...
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SourceResult:
    """One source's answer. ``data`` is structured (it goes into the JSON and the findings);
    ``raw`` holds the raw outputs (command output, query rows as text) for the archive."""

    name: str
    status: str = OK
    elapsed: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "elapsed": round(self.elapsed, 3), "error": self.error,
                "data": self.data, "findings": [f.to_json() for f in self.findings]}


def rank(findings: list[Finding]) -> list[Finding]:
    """Most severe first; within a severity, in the order the sources reported them."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: order.get(f.severity, len(order)))
