"""``certs.check``'s work apart from the engine: probe every endpoint concurrently, each within
its own deadline, and assess what each one serves.

A hung endpoint (it accepts TCP and never answers) costs its own deadline and no more: the
pool is bounded (``certs.parallel``) and the whole fan-out ends by the time the last wave of
deadlines has passed, plus a second, whatever a straggler does."""

from __future__ import annotations

import math
import os
import ssl
from datetime import datetime, timezone
from typing import Any

from aep_ops.certs.endpoints import Endpoint
from aep_ops.certs.findings import CRITICAL, Thresholds, assess
from aep_ops.base.errors import UsageError

SYSTEM_TRUST = "the system trust store"


def trust_for(ca_file: str | None) -> tuple[ssl.SSLContext, str]:
    """The verifying context and how to name it; a CA file that cannot be used is bad input."""
    from aep_ops.certs.probe import trust_context

    if ca_file is None:
        return trust_context(None), SYSTEM_TRUST
    if not os.path.isfile(ca_file):
        what = "is a directory" if os.path.isdir(ca_file) else "no such file"
        raise UsageError(f"--ca-file {ca_file}: {what}; give a PEM file of the CA certificates to trust")
    try:
        return trust_context(ca_file), ca_file
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"--ca-file {ca_file} holds no usable PEM certificate ({getattr(exc, 'reason', None) or exc});"
                         " give a PEM file of CA certificates") from None


def check_endpoints(endpoints: list[Endpoint], *, ca_file: str | None, thresholds: Thresholds, parallel: int,
                    timeout: float, progress: Any = None) -> list[dict[str, Any]]:
    """One assessed row per endpoint, in the order given."""
    from aep_ops.certs.probe import Probe, probe
    from aep_ops.executors.fleet import map_bounded

    trust, trust_name = trust_for(ca_file)
    waves = math.ceil(len(endpoints) / max(parallel, 1)) if endpoints else 0
    answers = map_bounded(lambda ep: probe(ep, trust=trust, timeout=timeout), endpoints, parallel=parallel,
                          timeout=waves * timeout + 1.0)
    now = datetime.now(timezone.utc)
    rows = []
    for endpoint, answer in zip(endpoints, answers):
        if answer.ok:
            found = answer.value
        else:  # late, or a bug in the probe: still one row, never a missing endpoint
            found = Probe(endpoint, error=f"no answer within {timeout:g}s" if answer.late else answer.why())
        rows.append(assess(found, thresholds, now, trust_name))
        if progress is not None and rows[-1]["status"] == CRITICAL:
            progress(f"{rows[-1]['label']}: " + "; ".join(p["message"] for p in rows[-1]["problems"]))
    return rows
