"""Files for node_exporter's textfile collector, rendered by prometheus_client.

A file is written as prometheus_client's ``write_to_textfile`` does it, a temporary file beside
the target renamed over it, so the collector reads the old file or the new one, never half of
one (and ignores the temporary file: its name does not end in ``.prom``). The write itself is
``atomicfile.replace_file``: it also makes the file 0644 *before* the rename (the timers' services
run with UMask=0077, and ``write_to_textfile`` would publish a file that the collector's user
cannot read) and fsyncs it. Every family comes from the catalogue, so a HELP cannot differ
between two files. ``read`` gives a file's samples back: a writer that keeps a value across runs
(the last success) reads it there, not in a second store that could disagree. prometheus_client
is imported inside the functions: the CLI must start fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from aep_ops.metrics.catalogue import family

UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0

    def key(self) -> tuple:
        return self.name, tuple(sorted(self.labels.items()))


def metrics_dir(settings: Any) -> Path:
    """``metrics.dir`` (point node_exporter's --collector.textfile.directory at it), else STATE_DIR/metrics."""
    configured = settings.get("metrics.dir")
    return Path(configured).expanduser() if configured else settings.state_dir / "metrics"


def run_file(settings: Any, runbook_id: str) -> Path:
    """One file per runbook and environment (``aep_ops_run_backup.run@prod.prom``, named like the
    run lock): two runs never rewrite each other's series."""
    return metrics_dir(settings) / f"aep_ops_run_{UNSAFE.sub('_', runbook_id)}@{settings.env_name}.prom"


def area_file(settings: Any, area: str) -> Path:
    """One file per area and environment (``aep_ops_backup_prod.prom``), like the drill's and the certificates'."""
    return metrics_dir(settings) / f"aep_ops_{area}_{settings.env_name}.prom"


def render(samples: Iterable[Sample]) -> bytes:
    """The exposition text of ``samples``: one HELP and TYPE per family, families in catalogue terms."""
    from prometheus_client import generate_latest

    return generate_latest(_registry(samples))


def write(path: Path, samples: Iterable[Sample]) -> Path:
    """Replace ``path`` with ``samples`` (tmp + fsync + rename), readable by the collector's user
    whatever this process's umask; a directory made for it is 0755."""
    from aep_ops.base.atomicfile import replace_file

    data = render(samples)  # first: a sample outside the catalogue leaves the old file as it was
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o755)
    replace_file(path, data)
    return path


def read(path: Path) -> list[Sample]:
    """The samples of a file this module wrote; [] when it is missing or cannot be parsed (then
    nothing is carried over: the next write starts afresh rather than failing the run's metrics)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return []
    from prometheus_client.parser import text_string_to_metric_families

    try:
        return [Sample(s.name, dict(s.labels), float(s.value))
                for fam in text_string_to_metric_families(text) for s in fam.samples]
    except ValueError:
        return []


def merged(previous: Iterable[Sample], new: Iterable[Sample]) -> list[Sample]:
    """``previous`` with every series that ``new`` holds replaced by its new value (others kept)."""
    out = {s.key(): s for s in previous}
    out.update({s.key(): s for s in new})
    return list(out.values())


@contextlib.contextmanager
def locked(settings: Any, path: Path) -> Iterator[None]:
    """Read, change and write ``path`` alone: two runs that take no run lock (read-only runbooks)
    may end at once. The lock file is under STATE_DIR/locks, not beside the metrics."""
    directory = settings.state_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"metrics-{path.name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _registry(samples: Iterable[Sample]) -> Any:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(list(samples)))
    return registry


class _Collector:
    """Yields the samples as gauge families of the catalogue, families in the order first seen."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families: dict[str, Any] = {}
        for sample in self.samples:
            spec = family(sample.name)
            if set(sample.labels) != set(spec.labels):
                raise ValueError(f"{sample.name}: labels {sorted(sample.labels)}, the catalogue says"
                                 f" {sorted(spec.labels)}")
            if sample.name not in families:
                families[sample.name] = GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))
            families[sample.name].add_metric([str(sample.labels[k]) for k in spec.labels], float(sample.value))
        yield from families.values()

    def describe(self) -> list:
        return []
