"""Running a runbook: plan (dry-run), lock, journal, check -> apply -> verify, resume.

This is the one code path behind every front door. It knows nothing of AWS, PostgreSQL
or SSH; steps do.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

from aep_ops.engine import journal as jr
from aep_ops.engine.context import RunContext, RunOptions, say as _say
from aep_ops.engine.hooks import around_run
from aep_ops.engine.lock import AdvisoryLock, FileLock, Holder
from aep_ops.engine.markdown import find_doc, parse
from aep_ops.engine.runbook import Runbook, lock_key
from aep_ops.engine.step import (CHANGED, DONE_STATES, FAILED, PENDING, RUNNING, UNCHANGED, OutputUnavailable,
                                 Plan, Step)
from aep_ops.engine.timeouts import deadline, with_retries
from aep_ops.base.errors import (AepError, ApprovalRequired, NotResumable, StepFailed, ToolMissing, UsageError,
                             VerificationFailed)
from aep_ops.base.log import audit, bind, default_actor, get_logger, unbind
from aep_ops.base.redact import redact
from aep_ops.base.textfmt import STEP_LINE_WIDTH, duration, one_line, step_status

log = get_logger(__name__)


@dataclass
class StepOutcome:
    number: int
    step_id: str
    title: str
    status: str  # unchanged | changed | failed | skipped | pending, or the plan status in a dry run
    summary: str = ""
    error: str | None = None
    duration: float = 0.0
    anchor: str = ""
    earlier: bool = False  # finished in an earlier attempt of a resumed run


@dataclass
class RunResult:
    runbook: str
    env: str
    status: str  # planned | succeeded | failed | verification_failed | interrupted
    run_id: str | None = None
    steps: list[StepOutcome] = field(default_factory=list)
    error: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # set by steps via ctx.summary (e.g. "dsn")
    resumable: bool = True  # False: a person checks the interrupted step, then starts a new run


class Interrupted(BaseException):
    """SIGTERM or Ctrl-C during a run: record it, release the lock, then stop."""

    run_id: str | None = None


def run_runbook(rb: Runbook, settings: Any, *, params: dict[str, Any] | None = None, dry_run: bool = False,
                resume: str | None = None, yes: bool = False, approved_by: str | None = None,
                claim: str | None = None, out: IO[str] | None = None) -> RunResult:
    """``claim``: carry out the approved request RUN_ID (engine/approvals), which waits in the
    journal; its approval is consumed, and only with the arguments that were approved."""
    if claim and (resume or dry_run):
        raise UsageError("an approved request is carried out as a new run: not with --resume or --dry-run")
    options = RunOptions(dry_run=dry_run, resume=resume, yes=yes, approved_by=approved_by, claim=claim)
    out = out or sys.stderr
    doc_path = find_doc(rb.id, settings.get("runbook_dirs") or ())
    doc = parse(doc_path) if doc_path else None
    anchors = {s.id: (f"runbooks/{doc.anchor(s.id)}" if doc else "") for s in rb.steps}
    bind(runbook=rb.id, env=settings.env_name, actor=default_actor())
    try:
        if dry_run:
            ctx = _prepare(rb, settings, dict(params or {}), options, out)
            return _plan(rb, ctx, anchors)
        journal = jr.Journal.open(settings)
        try:
            return _run(rb, settings, journal, dict(params or {}), options, anchors, out)
        finally:
            journal.close()
    finally:
        unbind("runbook", "env", "run_id", "step")


def _prepare(rb: Runbook, settings: Any, params: dict[str, Any], options: RunOptions, out: IO[str],
             run_id: str | None = None) -> RunContext:
    known = {p.name: p.default for p in rb.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UsageError(f"{rb.id}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(known) or 'none'})")
    params = {p.name: _bounded(p, params.get(p.name, p.default)) for p in rb.params}
    ctx = RunContext(settings=settings, runbook_id=rb.id, params=dict(params), options=options, run_id=run_id, out=out)
    rb.func(ctx, **params)  # validates input before anything is touched
    return ctx


def validate(rb: Runbook, settings: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as a run would take them (known, within bounds, accepted by the runbook's
    own input check), without running anything: for a front door that asks before it runs."""
    ctx = _prepare(rb, settings, dict(params), RunOptions(dry_run=True), sys.stderr)
    return {p.name: ctx.params[p.name] for p in rb.params}  # as _run records them


def _bounded(param: Any, value: Any) -> Any:
    """A numeric parameter within its declared range (``@runbook(bounds=...)``), checked here so
    that every front door gets the same answer: ``--scale -3: expected a whole number from 0 to 1000``."""
    if param.kind not in (int, float) or value is None:
        return value
    from aep_ops.base.numbers import number

    low, high = param.bounds
    return number(f"--{param.name.replace('_', '-')}", value, param.kind, default=param.default,
                  minimum=low, maximum=high)


def _plan(rb: Runbook, ctx: RunContext, anchors: dict[str, str]) -> RunResult:
    result = RunResult(runbook=rb.id, env=ctx.env_name, status="planned")
    for number, step_cls in enumerate(rb.steps, 1):
        step = step_cls()
        try:
            plan = step.check(ctx)
        except OutputUnavailable as exc:
            plan = Plan.unknown(f"step {exc.step_id} has not run")
        except VerificationFailed as exc:
            plan = Plan("failed", str(exc), exc.details)
        except (UsageError, ToolMissing):
            raise
        except AepError as exc:  # e.g. a service an earlier step would start is down: say so, go on
            plan = Plan("failed", str(exc))
        if plan.status == "unchanged":
            ctx.outputs[step.id] = dict(plan.details)  # a known fact: later checks may use it
        if plan.status == "failed" and step.trial and result.error is None:
            result.error = f"step {step.id}: {plan.summary}"  # the dry run's trial failed: exit 1
        result.steps.append(StepOutcome(number, step.id, step.title, plan.status, plan.describe(),
                                        anchor=anchors[step.id]))
        log.info("step.plan", step=step.id, step_number=number, plan=plan.status, summary=plan.summary)
    return result


def _run(rb: Runbook, settings: Any, journal: jr.Journal, params: dict[str, Any], options: RunOptions,
         anchors: dict[str, str], out: IO[str]) -> RunResult:
    records: dict[int, jr.StepRecord] = {}
    if options.resume:
        prior = _load_resumable(journal, options.resume, rb, settings)
        if prior.status == jr.RUN_SUCCEEDED:
            raise UsageError(f"run {prior.id} already succeeded; there is nothing to resume")
        params = prior.params
        records = {r.idx: r for r in journal.steps(prior.id)}
        run_id = prior.id
    else:
        run_id = options.claim or jr.new_run_id()
    ctx = _prepare(rb, settings, params, options, out, run_id)
    params = {p.name: ctx.params[p.name] for p in rb.params}
    lock = lock_for(settings, journal, rb.lock_key(settings.env_name)) if rb.mutating else _NoLock()
    lock.acquire(Holder.me(run_id))
    try:
        bind(run_id=run_id)
        if lock.stale is not None and lock.stale.run_id != run_id:
            journal.mark_interrupted(lock.stale.run_id, f"its process died ({lock.stale.describe()});"
                                                        f" lock taken over by run {run_id}")
            log.warning("lock.stale_taken_over", stale=lock.stale.describe())
            _say(out, f"note: took over the lock of {lock.stale.describe()}, whose process is gone")
        overrides = settings.overrides()  # --set and AEP_OPS_*: recorded with each attempt, masked
        if options.resume:
            journal.reopen_run(run_id, actor=default_actor(), host=socket.gethostname(), overrides=overrides)
            log.info("run.resume", attempt_of=run_id)
        elif options.claim:
            _claim_approved(rb, settings, journal, run_id, params, options, overrides)
        else:
            journal.start_run(rb.id, settings.env_name, params, actor=default_actor(),
                              host=socket.gethostname(), run_id=run_id, overrides=overrides)
        log.info("run.start", steps=len(rb.steps), params=params, overrides=overrides)
        _say(out, f"{rb.id} on {settings.env_name}: run {run_id}")
        with around_run(rb, settings, run_id, resumed=bool(options.resume)) as run, _interruptible():
            return run.finished(_run_steps(rb, ctx, journal, records, anchors, out))
    finally:
        lock.release()


def _run_steps(rb: Runbook, ctx: RunContext, journal: jr.Journal, records: dict[int, jr.StepRecord],
               anchors: dict[str, str], out: IO[str]) -> RunResult:
    result = RunResult(runbook=rb.id, env=ctx.env_name, status=jr.RUN_RUNNING, run_id=ctx.run_id,
                       outputs=ctx.outputs, summary=ctx.summary)
    soft_failures: list[str] = []
    total = len(rb.steps)
    for number, step_cls in enumerate(rb.steps, 1):
        step = step_cls()
        outcome = StepOutcome(number, step.id, step.title, PENDING, anchor=anchors[step.id])
        result.steps.append(outcome)
        bind(step=step.id)
        log.info("step.start", step_number=number, steps=total, title=step.title, anchor=outcome.anchor)
        _say(out, f"[{number}/{total}] {step.title}")  # the anchor: in runs.show, --json and the log
        started = time.monotonic()
        try:
            _one_step(step, number, ctx, journal, records.get(number), outcome)
        except VerificationFailed as exc:
            ctx.outputs[step.id] = exc.details
            _fail(journal, ctx, number, step, outcome, exc)
            if step.soft:
                soft_failures.append(f"{step.id}: {redact(str(exc))}")
                ctx.soft_failures[step.id] = redact(str(exc))
                continue
            return _finish(journal, result, jr.RUN_VERIFICATION_FAILED, f"step {step.id}: {exc}")
        except (AepError, Exception) as exc:  # noqa: B014 - AepError listed for the reader
            _fail(journal, ctx, number, step, outcome, exc)
            if isinstance(exc, (ApprovalRequired, UsageError, ToolMissing)):  # refusals keep their exit code
                _finish(journal, result, jr.RUN_REFUSED, str(exc))  # not "failed": they would crowd out failures
                raise
            if not isinstance(exc, AepError):
                log.exception("step.crash")
            result.resumable = not isinstance(exc, NotResumable)
            return _finish(journal, result, jr.RUN_FAILED, f"step {step.id}: {_describe(exc)}")
        except (Interrupted, KeyboardInterrupt):
            _settle_interrupted(step, ctx)
            _fail(journal, ctx, number, step, outcome, StepFailed("interrupted"))
            _finish(journal, result, jr.RUN_INTERRUPTED, f"interrupted during step {step.id}")
            stop = Interrupted(f"interrupted during step {step.id}; resume with --resume {ctx.run_id}")
            stop.run_id = ctx.run_id
            raise stop from None
        finally:
            outcome.duration = time.monotonic() - started
            ctx.timings[step.id] = outcome.duration
            log.info("step.done", step_number=number, status=outcome.status, summary=outcome.summary,
                     duration=round(outcome.duration, 3))
            unbind("step")
        _say(out, _outcome_line(step_status(outcome.status, step.soft or not rb.mutating), outcome.summary,
                                outcome.duration))
    if soft_failures:
        return _finish(journal, result, jr.RUN_VERIFICATION_FAILED, "; ".join(soft_failures))
    return _finish(journal, result, jr.RUN_SUCCEEDED, None)


def _one_step(step: Step, number: int, ctx: RunContext, journal: jr.Journal, prior: jr.StepRecord | None,
              outcome: StepOutcome) -> None:
    if prior is not None and prior.status in DONE_STATES:
        ctx.outputs[step.id] = prior.outputs
        outcome.status, outcome.summary, outcome.earlier = prior.status, "done in an earlier attempt", True
        return
    interrupted = prior is not None and not step.idempotent and prior.plan is not None and prior.status != PENDING
    journal.set_step(ctx.run_id, number, step.id, RUNNING, title=step.title)
    ctx.journal_note = lambda message: journal.add_event(ctx.run_id, number, step.id, message)
    with deadline(step.timeout, f"step {step.id}"):
        recovered = step.recover(ctx, prior) if interrupted else None
        if recovered is not None:  # the interrupted attempt did it: record that, do not do it twice
            plan, outputs = Plan.change(f"{prior.plan} (done by the interrupted attempt)"), recovered
            log.info("step.recovered", outputs=recovered)
        else:
            plan = step.check(ctx)
            if plan.status == "unknown":
                raise StepFailed(f"step {step.id} could not decide what to do: {plan.summary}")
            if not plan.needed:
                facts = {**plan.details, "summary": plan.summary}
                journal.set_step(ctx.run_id, number, step.id, UNCHANGED, plan=plan.describe(), outputs=facts)
                ctx.outputs[step.id] = facts
                outcome.status, outcome.summary = UNCHANGED, plan.summary
                return
            if step.requires_approval and ctx.settings.production and not (ctx.options.yes or ctx.options.approved_by):
                journal.set_step(ctx.run_id, number, step.id, PENDING, note="waiting for approval")
                outcome.status = PENDING
                raise ApprovalRequired(f"step {step.id} would change production ({plan.summary});"
                                       f" run again with --yes to approve (then --resume {ctx.run_id})")
            journal.set_step(ctx.run_id, number, step.id, RUNNING, plan=plan.summary, note="applying")
            log.info("step.apply.start", summary=plan.summary)

            def apply() -> dict[str, Any]:
                return step.apply(ctx, plan) or {}

            outputs = with_retries(apply, retries=step.retries, retry_on=step.retry_on,
                                   on_retry=lambda n, e: log.warning("step.apply.retry", attempt=n, error=str(e)))
        ctx.outputs[step.id] = outputs
        step.verify(ctx, outputs)
    journal.set_step(ctx.run_id, number, step.id, CHANGED, outputs=outputs)
    audit(ctx.state_dir, f"{ctx.runbook_id}:{step.id}", target=ctx.env_name,
          args={**{k: v for k, v in ctx.params.items()}, "plan": plan.summary}, result="changed",
          overrides=ctx.settings.overrides())
    outcome.status, outcome.summary = CHANGED, plan.summary


def _fail(journal: jr.Journal, ctx: RunContext, number: int, step: Step, outcome: StepOutcome,
          exc: BaseException) -> None:
    message = _describe(exc)
    if outcome.status != PENDING or not isinstance(exc, ApprovalRequired):
        journal.set_step(ctx.run_id, number, step.id, FAILED, error=message,
                         outputs=ctx.outputs.get(step.id))
        outcome.status = FAILED
    outcome.error = redact(message)
    log.error("step.failed", error=message)
    audit(ctx.state_dir, f"{ctx.runbook_id}:{step.id}", target=ctx.env_name, args=dict(ctx.params),
          result=f"failed: {message}", overrides=ctx.settings.overrides())
    # Not the error itself: the run's result says it, once (on stdout, or as the final line).
    _say(ctx.out, f"      -> {outcome.status}" + (": waiting for approval (see below)" if outcome.status == PENDING
                                                   else ": see below"))


def _outcome_line(status: str, summary: str, seconds: float) -> str:
    """``      -> changed: what was done (1.2 s)``, cut to fit ``STEP_LINE_WIDTH`` columns."""
    head, tail = f"      -> {status}", f" ({duration(seconds)})"
    if not summary:
        return head + tail
    head += ": "
    return head + one_line(summary, limit=max(STEP_LINE_WIDTH - len(head) - len(tail), 20)) + tail


def _claim_approved(rb: Runbook, settings: Any, journal: jr.Journal, run_id: str, params: dict[str, Any],
                    options: RunOptions, overrides: dict[str, Any]) -> None:
    from aep_ops.engine.approvals import Approvals

    approval = Approvals(journal).consume(run_id, rb.id, settings.env_name, params)
    if not journal.claim_run(run_id, host=socket.gethostname(), overrides=overrides):
        raise UsageError(f"run {run_id} is not waiting for approval (see `inv runs.show {run_id}`)")
    options.approved_by = approval.decided_by
    log.info("run.approved", requested_by=approval.requested_by, approved_by=approval.decided_by)


def _settle_interrupted(step: Step, ctx: RunContext) -> None:
    """Let the interrupted step stop what it started; a second SIGTERM or Ctrl-C (an impatient
    user, systemd's stop) must not cut that short and leave a server running."""
    with _signals_ignored():
        try:
            step.interrupted(ctx)
        except Exception as exc:  # noqa: BLE001 - reported; the interrupt is still what ends the run
            log.exception("step.interrupted.cleanup_failed")
            _say(ctx.out, f"      could not stop what step {step.id} started: {redact(_describe(exc))}")


@contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A no-op handler, not SIG_IGN: an ignored disposition would be inherited by the commands
    # the cleanup runs (pg_ctl), and a deadline could then not stop them.
    previous = {signum: signal.signal(signum, _note_ignored) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _note_ignored(signum: int, frame: object) -> None:
    log.warning("signal.ignored_during_cleanup", signal=signal.Signals(signum).name)


def _finish(journal: jr.Journal, result: RunResult, status: str, error: str | None) -> RunResult:
    journal.finish_run(result.run_id, status, error)
    result.status = status
    result.error = redact(error) if error else None
    log.info("run.finish", status=status, error=error)
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AepError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _load_resumable(journal: jr.Journal, run_id: str, rb: Runbook, settings: Any) -> jr.RunRecord:
    prior = journal.get_run(run_id)
    if prior is None:
        raise UsageError(f"--resume {run_id}: no such run in the journal (see `inv runs.list`)")
    if prior.runbook != rb.id or prior.env != settings.env_name:
        raise UsageError(f"--resume {run_id}: that run is {prior.runbook} on {prior.env},"
                         f" not {rb.id} on {settings.env_name}")
    return prior


def lock_for(settings: Any, journal: jr.Journal, key: str) -> FileLock | AdvisoryLock:
    """The lock that keeps runs of one runbook on one environment apart (also for tasks that
    change a runbook's state outside a run, such as patch.abandon)."""
    if journal.kind == "postgres":
        return AdvisoryLock(settings.secret(settings.get("journal.dsn")), key)
    return FileLock(settings.state_dir / "locks", key)


def run_is_live(settings: Any, journal: jr.Journal, run: jr.RunRecord | None) -> bool:
    """Is ``run`` still going? The journal says "running" AND its lock (runbook@env) is held by
    it: a run killed with SIGKILL still reads "running" in the journal, but the operating system
    (or the database) released its lock when its process died."""
    if run is None or run.status != jr.RUN_RUNNING:
        return False
    holder = lock_for(settings, journal, lock_key(run.runbook, run.env)).current_holder()
    return holder is not None and holder.run_id in (run.id, "unknown")


class _NoLock:
    """Read-only runbooks (doctor) change nothing and may run side by side."""

    stale = None

    def acquire(self, holder: Holder) -> None:
        pass

    def release(self) -> None:
        pass


@contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM (systemd stop, kill) into Interrupted so the journal and lock are settled."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted() from None
    finally:
        signal.signal(signal.SIGTERM, previous)
