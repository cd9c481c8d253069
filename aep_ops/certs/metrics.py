"""``certs.check``'s results as Prometheus text (one file per environment, for node_exporter's
textfile collector): seconds to expiry and a pass/fail per endpoint and host, and when the
check last ran, so an alert fires on an expiring certificate and on a check that stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aep_ops.base.atomicfile import replace_file
from aep_ops.metrics.catalogue import family

# The families of this file; their HELP and TYPE are the catalogue's (aep_ops/metrics/catalogue.py).
FAMILIES = {name: family(name).help for name in (
    "aep_ops_cert_expiry_seconds", "aep_ops_cert_check_ok", "aep_ops_acm_cert_expiry_seconds",
    "aep_ops_certs_check_last_run_timestamp_seconds")}


def render(env: str, endpoint_rows: list[dict[str, Any]], acm_rows: list[dict[str, Any]], now: float) -> str:
    samples: dict[str, list[str]] = {name: [] for name in FAMILIES}
    for row in endpoint_rows:
        labels = _labels(env=env, certificate=row.get("certificate") or "", endpoint=row["label"],
                         host=row.get("host") or "")
        if row.get("seconds_left") is not None:
            samples["aep_ops_cert_expiry_seconds"].append(f"{{{labels}}} {row['seconds_left']:.3f}")
        samples["aep_ops_cert_check_ok"].append(f"{{{labels}}} {0 if row['status'] == 'critical' else 1}")
    for row in acm_rows:
        if row.get("seconds_left") is not None:
            labels = _labels(env=env, certificate=row["certificate"], arn=row["arn"])
            samples["aep_ops_acm_cert_expiry_seconds"].append(f"{{{labels}}} {row['seconds_left']:.3f}")
    samples["aep_ops_certs_check_last_run_timestamp_seconds"].append(f"{{{_labels(env=env)}}} {now:.3f}")
    out = []
    for name, lines in samples.items():
        if lines:
            out += [family(name).header()] + [name + line for line in lines]
    return "\n".join(out) + "\n"


def write(path: Path, text: str) -> None:
    replace_file(path, text.encode())


def _labels(**values: str) -> str:
    return ",".join(f'{key}="{_escape(value)}"' for key, value in values.items())


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
