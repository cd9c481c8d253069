"""Steps of ``db.terminate`` and ``db.cancel``: end other sessions of the environment's primary,
named exactly.

A target is a backend: (pid, backend_start), never a PID alone (PIDs are reused as soon as a
backend exits). The check lists the targets (journaled: ``runs.show`` says who was hit); the apply
acts in one statement only on sessions that still match the pair AND the condition (idle in
transaction that long, running that query), so a session that moved on, or a new backend that
took the PID, is left alone; every session acted on gets an audit line; the verify waits, bounded,
until they are gone (terminate) or no longer running that query (cancel). Never our own backend,
never a non-client backend (autovacuum, walsender ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aep_ops.base.errors import UsageError, VerificationFailed, refuse_blank
from aep_ops.base.log import audit, get_logger
from aep_ops.base.timefmt import parse_span
from aep_ops.engine.step import Plan, Step

log = get_logger(__name__)

VERIFY_SECONDS = 15.0
MAX_SPAN = 30 * 86400
TERMINATE, CANCEL = "terminate", "cancel"

# The same statement checks and acts: targets are (pid, backend_start, query_start) triples, and
# the condition is re-evaluated by the server at the moment of acting.
_MATCH = """
  from pg_stat_activity a
  join unnest(%(pids)s::int[], %(starts)s::timestamptz[], %(queries)s::timestamptz[])
       as t(pid, backend_start, query_start)
    on a.pid = t.pid and a.backend_start = t.backend_start
 where a.backend_type = 'client backend' and a.pid <> pg_backend_pid()
   and (%(idle_for)s::float8 is null or (a.state in ('idle in transaction', 'idle in transaction (aborted)')
        and a.state_change <= now() - make_interval(secs => %(idle_for)s::float8)))
   and (%(cancel)s::bool is not true or (a.state = 'active' and a.query_start = t.query_start))
"""
ACT_SQL = {TERMINATE: "select a.pid, pg_terminate_backend(a.pid)" + _MATCH,
           CANCEL: "select a.pid, pg_cancel_backend(a.pid)" + _MATCH}
STILL_SQL = "select a.pid" + _MATCH


@dataclass(frozen=True)
class Selector:
    """Which sessions: one backend (pid + backend_start), or all idle in transaction for at least
    ``idle_for`` seconds, or all running one query for at least ``running_for`` seconds."""

    action: str
    pid: int | None = None
    backend_start: datetime | None = None
    idle_for: float | None = None
    running_for: float | None = None

    def describe(self) -> str:
        if self.pid is not None:
            return f"pid {self.pid} started {self.backend_start.isoformat()}"
        if self.idle_for is not None:
            return f"sessions idle in transaction for {self.idle_for:g} s or more"
        return f"queries running for {self.running_for:g} s or more"


def parse_selector(action: str, *, pid: Any, backend_start: Any, older_than: Any, flag: str) -> Selector:
    """Flags -> Selector; anything missing, blank, zero or contradictory is a UsageError (exit 2):
    no value ever widens to "all sessions"."""
    refuse_blank("--pid", pid, "give the PID incident.diagnose printed")
    refuse_blank("--backend-start", backend_start, "give the backend_start incident.diagnose printed")
    refuse_blank(flag, older_than, "give a span such as 10m")
    by_pid = pid is not None or backend_start is not None
    if by_pid and older_than is not None:
        raise UsageError(f"give --pid/--backend-start or {flag}, not both")
    if not by_pid and older_than is None:
        raise UsageError(f"db.{action} needs a target: --pid PID --backend-start ISO (as incident.diagnose prints"
                         f" them) or {flag} SPAN")
    if by_pid:
        if pid is None or backend_start is None:
            raise UsageError("--pid and --backend-start go together (PIDs are reused: the start time tells"
                             " the backends apart); copy both from incident.diagnose")
        return Selector(action, pid=_pid(pid), backend_start=_when(backend_start))
    seconds = parse_span(flag, older_than, minimum=1, maximum=MAX_SPAN)
    return Selector(action, idle_for=seconds) if action == TERMINATE else Selector(action, running_for=seconds)


def _pid(text: Any) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if not 1 <= value <= 2 ** 31 - 1:
        raise UsageError(f"--pid {str(text)[:20]!r}: expected a backend PID (a whole number, 1 or more)")
    return value


def _when(text: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(str(text).strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise UsageError(f"--backend-start {str(text)[:40]!r}: expected the ISO time with its UTC offset, as"
                         " incident.diagnose prints it (e.g. 2026-12-07T23:10:11.123456+00:00)")
    return moment


def _connect(ctx: Any) -> Any:
    from aep_ops.db.primary import primary_params
    from aep_ops.pg.connect import connect

    return connect(primary_params(ctx.settings), connect_timeout=10, statement_timeout_ms=10_000,
                   application_name=f"aep-ops-{ctx.runbook_id}")


def _target(s: Any) -> dict[str, Any]:
    from aep_ops.pg.activity import iso, shown_query

    since = s.state_seconds if s.idle_in_transaction else (s.query_seconds if s.active else s.state_seconds)
    return {"pid": s.pid, "backend_start": iso(s.backend_start), "user": s.user, "application": s.application,
            "state": s.state, "since_seconds": round(since or 0.0, 1),
            "query_start": iso(s.query_start) if s.query_start else None, "query": shown_query(s.query, 80)}


def _line(t: dict[str, Any]) -> str:
    app = f" {t['application']}" if t["application"] else ""
    return f"pid {t['pid']} ({t['user']}{app}, {t['state']} for {t['since_seconds']:g} s)"


def find_targets(ctx: Any, sel: Selector) -> tuple[list[dict[str, Any]], str]:
    """The sessions the selector names now, and a note when there is none to act on."""
    from aep_ops.pg import activity

    with _connect(ctx) as conn:
        rows = activity.sessions(conn)
        kind = activity.backend_type(conn, sel.pid) if sel.pid is not None else None
        own = conn.info.backend_pid
    if sel.pid is not None:
        if sel.pid == own or (kind is not None and kind != "client backend"):
            what = "this run's own session" if sel.pid == own else kind
            raise UsageError(f"pid {sel.pid} is not a client session ({what}): refused; db.terminate and"
                             " db.cancel act on client backends only")
        return _by_pid(ctx, sel, rows)
    if sel.idle_for is not None:
        found = [s for s in rows if s.idle_in_transaction and (s.state_seconds or 0) >= sel.idle_for]
    else:
        found = [s for s in rows if s.active and (s.query_seconds or 0) >= sel.running_for]
    return [_target(s) for s in found], ""


def _by_pid(ctx: Any, sel: Selector, rows: list) -> tuple[list[dict[str, Any]], str]:
    from aep_ops.pg.activity import iso

    match = [s for s in rows if s.pid == sel.pid]
    if not match:
        return [], f"no backend has pid {sel.pid} now: it has ended"
    s = match[0]
    if s.backend_start != sel.backend_start:
        raise UsageError(f"pid {sel.pid} is now another backend (started {iso(s.backend_start)}, not"
                         f" {iso(sel.backend_start)}: the PID was reused); nothing done; run"
                         f" `inv incident.diagnose --env {ctx.env_name}` again")
    if sel.action == CANCEL and not s.active:
        return [], (f"pid {sel.pid} is {s.state}, running no query: cancelling does nothing (use db.terminate"
                    " to end an idle-in-transaction session)")
    return [_target(s)], ""


class _Targets(Step):
    """Read-only: list the targets (journaled as outputs); refuses a reused PID."""

    def check(self, ctx):
        sel: Selector = ctx.params["selector"]
        targets, note = find_targets(ctx, sel)
        if not targets:
            return Plan.unchanged(note or f"no {sel.describe()}", targets=[], selector=sel.describe())
        return Plan.unchanged(f"{len(targets)} target(s): " + "; ".join(_line(t) for t in targets),
                              targets=targets, selector=sel.describe())


class _Act(Step):
    """Act on the listed targets that still match, in one statement; audit each; verify bounded."""

    requires_approval = True
    verb = ""

    def check(self, ctx):
        listed = (ctx.outputs.get(self.listing) or {}).get("targets") or []
        if not listed:
            return Plan.unchanged(f"nothing to {self.verb}")
        from aep_ops.pg.connect import wrap_errors

        with _connect(ctx) as conn, wrap_errors("reading pg_stat_activity", conn):
            still = {r[0] for r in conn.execute(STILL_SQL, _args(ctx.params["selector"], listed)).fetchall()}
        live = [t for t in listed if t["pid"] in still]
        if not live:
            return Plan.unchanged(f"none of the {len(listed)} listed session(s) still matches: nothing to {self.verb}")
        return Plan.change(f"{self.verb} " + "; ".join(_line(t) for t in live), targets=live)

    def apply(self, ctx, plan):
        from aep_ops.pg.connect import wrap_errors

        sel: Selector = ctx.params["selector"]
        targets = plan.details["targets"]
        with _connect(ctx) as conn, wrap_errors(f"{self.verb} sessions", conn):
            rows = conn.execute(ACT_SQL[sel.action], _args(sel, targets)).fetchall()
        hit = {pid for pid, ok in rows if ok}
        acted = [t for t in targets if t["pid"] in hit]
        for t in acted:
            audit(ctx.state_dir, f"{ctx.runbook_id}:{self.verb}", target=f"{ctx.env_name}:pid {t['pid']}",
                  args={"pid": t["pid"], "backend_start": t["backend_start"], "user": t["user"],
                        "application": t["application"], "state": t["state"], "selector": sel.describe()},
                  result="signalled")
            ctx.progress(f"{self.verb}: {_line(t)}")
        log.info("db.sessions.acted", action=sel.action, pids=sorted(hit))
        return {"acted": acted, "skipped": [t for t in targets if t["pid"] not in hit]}

    def verify(self, ctx, outputs):
        acted = outputs.get("acted") or []
        if not acted:
            return
        sel: Selector = ctx.params["selector"]
        deadline = time.monotonic() + VERIFY_SECONDS
        from aep_ops.pg.connect import wrap_errors

        with _connect(ctx) as conn, wrap_errors("reading pg_stat_activity", conn):
            while True:
                left = [r[0] for r in conn.execute(STILL_SQL, _args(sel, acted, for_verify=True)).fetchall()]
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        if left:
            raise VerificationFailed(f"{len(left)} session(s) still there {VERIFY_SECONDS:g} s after"
                                     f" pg_{sel.action}_backend: pid {', '.join(map(str, left))}; see their"
                                     f" wait_event in pg_stat_activity")


def _args(sel: Selector, targets: list[dict[str, Any]], *, for_verify: bool = False) -> dict[str, Any]:
    """Parameters of _MATCH. The verify asks only "is that backend (or that query) still there",
    without the idle condition (a terminated session stops matching by vanishing)."""
    return {"pids": [t["pid"] for t in targets],
            "starts": [datetime.fromisoformat(t["backend_start"]) for t in targets],
            "queries": [datetime.fromisoformat(t["query_start"]) if t.get("query_start") else None for t in targets],
            "idle_for": None if for_verify else sel.idle_for,
            "cancel": sel.action == CANCEL}


class TerminateTargets(_Targets):
    id = "sessions_to_terminate"
    title = "List the sessions to terminate (pid, backend_start, user, application, state, since)"
    timeout = 60


class EnsureTerminated(_Act):
    id = "ensure_sessions_terminated"
    title = "Terminate the listed sessions that still match, then wait until they are gone"
    timeout = 120
    verb = "terminate"
    listing = TerminateTargets.id


class CancelTargets(_Targets):
    id = "queries_to_cancel"
    title = "List the running queries to cancel (pid, backend_start, user, application, state, since)"
    timeout = 60


class EnsureCancelled(_Act):
    id = "ensure_queries_cancelled"
    title = "Cancel the listed queries that still run, then wait until they have stopped"
    timeout = 120
    verb = "cancel"
    listing = CancelTargets.id
