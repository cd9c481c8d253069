"""http-01 through the webroot of every host that serves the names.

The CA fetches ``http://NAME/.well-known/acme-challenge/TOKEN`` from whichever host DNS or the
load balancer sends it to, so the answer is written on **every** host of the role (over SSH,
the file's content on stdin) before the CA is told to look, and removed from every host after,
whatever the outcome."""

from __future__ import annotations

import posixpath
from typing import Any, Callable

from aep_ops.executors.files import remove_file, write_file
from aep_ops.base.errors import StepFailed
from aep_ops.base.log import get_logger

log = get_logger(__name__)


class WebrootChallenge:
    kind = "http-01"

    def __init__(self, webroot: str, hosts: list[Any], connect: Callable[[Any], Any], *, parallel: int = 8,
                 timeout: float = 120) -> None:
        self.webroot, self.hosts, self.connect = webroot, hosts, connect
        self.parallel, self.timeout = parallel, timeout

    def present(self, domain: str, name: str, value: str) -> None:
        failed = self._on_every_host(lambda ex, host: write_file(ex, self._path(name, host), value, "0644"))
        if failed:
            raise StepFailed(f"http-01 for {domain}: could not write the token on " + "; ".join(failed))

    def cleanup(self, domain: str, name: str, value: str) -> None:
        for problem in self._on_every_host(lambda ex, host: remove_file(ex, self._path(name, host))):
            log.warning("certs.challenge_cleanup_failed", domain=domain, problem=problem)

    def _path(self, name: str, host: Any) -> str:
        """WEBROOT/name (``{host}`` in the webroot is the host's name); never outside the challenge directory."""
        webroot = self.webroot.replace("{host}", host.name).rstrip("/")
        path = posixpath.normpath(posixpath.join(webroot, name))
        if not path.startswith(webroot + "/.well-known/acme-challenge/"):
            raise StepFailed(f"http-01 token path {name!r} leaves the webroot")  # a hostile CA answer
        return path

    def _on_every_host(self, action: Callable[[Any, Any], None]) -> list[str]:
        """``action`` on every host, a bounded number at a time; each failure as "host: why"."""
        from aep_ops.executors.fleet import map_bounded

        def one(host: Any) -> None:
            executor = self.connect(host)
            try:
                action(executor, host)
            finally:
                executor.close()

        answers = map_bounded(one, self.hosts, parallel=self.parallel, timeout=self.timeout)
        return [f"{host.name}: {answer.why()}" for host, answer in zip(self.hosts, answers) if not answer.ok]
