"""``chatops.serve``: the chat service as one long-running process. waitress serves the
guarded Bolt app (threads, a body limit at the transport too); SIGTERM or Ctrl-C stops taking
requests, then stops the runs in progress cleanly (each records itself as interrupted)."""

from __future__ import annotations

import signal
import threading
from typing import Any, Callable

from aep_ops.base.errors import ConfigError
from aep_ops.base.log import get_logger

log = get_logger(__name__)
SWEEP_SECONDS = 5.0  # how often expired approval requests are settled
HTTP_THREADS = 8


def serve(settings: Any, *, announce: Callable[[str], None] = print) -> None:
    from slack_bolt.adapter.wsgi import SlackRequestHandler
    from waitress import create_server

    from aep_ops.chatops.app import build_app
    from aep_ops.chatops.guard import EVENTS_PATH, Guard
    from aep_ops.chatops.service import ChatOps
    from aep_ops.chatops.service_config import exposed_runbooks, load_chat_config

    config = load_chat_config(settings)
    _check_roles(settings)
    svc = ChatOps(settings, config, exposed_runbooks(settings))
    guard = Guard(SlackRequestHandler(build_app(svc), path=EVENTS_PATH), signing_secret=config.signing_secret,
                  store=svc.store, max_body=config.max_body_bytes, rate_limited=_limiter(svc))
    try:
        server = create_server(guard, host=config.host, port=config.port, threads=HTTP_THREADS,
                               max_request_body_size=config.max_body_bytes, ident="aep-ops", expose_tracebacks=False)
    except OSError as exc:
        svc.stop(0)
        raise ConfigError(f"chatops.listen {config.host}:{config.port}: cannot listen there ({exc.strerror or exc});"
                          " choose another address or stop what holds it") from None
    stop = threading.Event()
    threading.Thread(target=_sweep, args=(svc, stop), name="chatops-sweep", daemon=True).start()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    announce(f"chatops: listening on http://{config.host}:{server.effective_port}{EVENTS_PATH}"
             f" ({config.command}, {len(svc.exposed)} runbooks, {config.workers} workers)")
    log.info("chatops.listening", port=server.effective_port, runbooks=sorted(svc.exposed))
    try:
        server.run()  # returns on KeyboardInterrupt (SIGINT, or SIGTERM through _interrupt)
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        server.close()
        announce("chatops: stopping; runs in progress are interrupted and can be resumed")
        svc.stop()
        log.info("chatops.stopped")


def _check_roles(settings: Any) -> None:
    """Every environment's role members are ids, before the service takes a request (exit 2)."""
    from aep_ops import config as aep_config
    from aep_ops.chatops.rbac import check_members

    for env in sorted(settings.get("environments") or {}):
        check_members(aep_config.load(env))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _limiter(svc: Any) -> Callable[[bytes], str | None]:
    from aep_ops.chatops.app import sender

    limit = svc.config.rate_limit_per_minute

    def limited(body: bytes) -> str | None:
        who = sender(body)
        if who is None or svc.store.count(who) <= limit:
            return None
        return f"slow down: at most {limit} commands a minute each; nothing was done, try again in a minute"

    return limited


def _sweep(svc: Any, stop: threading.Event) -> None:
    from aep_ops.chatops import flows

    while not stop.wait(SWEEP_SECONDS):
        try:
            flows.expire(svc)
        except Exception:  # noqa: BLE001 - logged; the next sweep tries again
            log.exception("chatops.sweep_failed")
