"""One action on every host of the chosen sources, a bounded number at a time, each host on its
own executor; every host's failure is collected and named, none stops the others."""

from __future__ import annotations

from typing import Any, Callable

from aep_ops.logs.settings import Source
from aep_ops.logs.targets import LogHost, by_host, connect


def on_each_host(settings: Any, chosen: list[Source], action: Callable[[Any, LogHost, list[Source]], Any], *,
                 parallel: int, timeout: float | None = None) -> list[tuple[LogHost, Any, str]]:
    """``action(executor, host, sources)`` on every host: (host, value, "" ) or (host, None, why)."""
    from aep_ops.executors.fleet import map_bounded

    pairs = by_host(settings, chosen)

    def one(pair: tuple[LogHost, list[Source]]) -> Any:
        host, host_sources = pair
        executor = connect(settings, host)
        try:
            return action(executor, host, host_sources)
        finally:
            executor.close()

    answers = map_bounded(one, pairs, parallel=parallel, timeout=timeout)
    return [(host, answer.value, answer.why()) for (host, _), answer in zip(pairs, answers)]


def config_paths(settings: Any, host: LogHost) -> tuple[str, str]:
    """(logrotate file, logrotate state file) on the host: this machine's under the state directory
    (aep-ops may run unprivileged there), other hosts' from ``logs.config_path``/``state_file``."""
    from aep_ops.logs.settings import logs_settings

    if host.local:
        base = settings.state_dir / "logrotate"
        return str(base / f"logrotate-{settings.env_name}.conf"), str(base / f"logrotate-{settings.env_name}.status")
    values = logs_settings(settings)
    return values["config_path"].replace("{host}", host.name), values["state_file"].replace("{host}", host.name)
