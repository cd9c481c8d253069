"""Running a runbook from chat, and the second-person approval of production changes.

A request that changes production is recorded, not run: the run waits in the journal as
"awaiting approval" (engine/approvals binds it to the run, environment and arguments), and the
request message carries Approve and Deny buttons. Another operator's approval starts the
``aep-ops`` process that consumes it; a denial, or no decision within the approval window,
settles the run as refused. Everything else runs at once. Every step is audited."""

from __future__ import annotations

import socket
import time
from typing import Any

from aep_ops.base.errors import ApprovalRequired, UsageError
from aep_ops.chatops.rbac import needed_role
from aep_ops.chatops.slack_out import code, plain

EXIT_MEANING = {0: "done", 1: "failed", 2: "refused (bad input)", 3: "locked by another run",
                4: "needs approval", 5: "finished, verification failed"}
UPDATE_EVERY = 1.0  # seconds between edits of the progress message


def request_run(svc: Any, asker: Any, command: Any) -> None:
    from aep_ops.engine import journal as jr
    from aep_ops.engine.runner import validate
    from aep_ops.tasks.adapter import typed_params

    rb, chat = svc.exposed[command.runbook.id]
    env = svc.env_of(command.kwargs.get("env"))
    settings = svc.settings_for(env)
    svc.authorise(asker, settings, needs=needed_role(rb, chat), what=f"running {rb.id}", runbook=rb.id)
    dry, resume = bool(command.kwargs.get("dry_run")), command.kwargs.get("resume")
    params = validate(rb, settings, typed_params(rb, command.kwargs)) if not resume else {}
    words = [rb.id, *command.words] + ([] if command.kwargs.get("env") else ["--env", env])
    needs_approval = settings.production and rb.mutating and not dry
    if needs_approval and resume:
        raise UsageError(f"a production run is resumed from the CLI, where --yes approves it:"
                         f" aep-ops {rb.id} --env {env} --resume {resume} --yes")
    root = svc.poster.post(asker.channel, f"<@{asker.who.user_id}> asked: `{plain(svc.config.command)}"
                                          f" {plain(asker.text)}`")
    if not needs_approval:
        svc.audit(asker, "chatops.run", target=env, runbook=rb.id, result="started")
        execute(svc, asker.channel, root, words, actor=str(asker.who))
        return
    run_id = jr.new_run_id()
    svc.journal.start_run(rb.id, env, params, actor=str(asker.who), host=socket.gethostname(), run_id=run_id,
                          status=jr.RUN_AWAITING_APPROVAL)
    approval = svc.approvals.request(run_id, rb.id, env, params, requested_by=str(asker.who),
                                     ttl_seconds=svc.config.approval_seconds, via="slack")
    svc.store.remember(run_id, asker.channel, root, words, str(asker.who))
    svc.audit(asker, "chatops.approval_requested", target=env, runbook=rb.id, run_id=run_id,
              result=f"awaiting approval until {approval.expires_at}")
    text = (f"{rb.id} on {env} changes production: run {run_id} waits for a second person's approval"
            f" (`{svc.config.command} approve {run_id}` or the button) until {approval.expires_at[:19]} UTC")
    svc.poster.post(asker.channel, plain(text), thread_ts=root, blocks=_buttons(plain(text), run_id, approval.args_hash))


def _buttons(text: str, run_id: str, args_hash: str) -> list[dict]:
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "block_id": f"approval-{run_id}", "elements": [
                {"type": "button", "action_id": "ops_approve", "style": "primary", "value": f"{run_id}:{args_hash}",
                 "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "action_id": "ops_deny", "style": "danger", "value": run_id,
                 "text": {"type": "plain_text", "text": "Deny"}}]}]


def approve(svc: Any, asker: Any, command: Any, expected_hash: str | None = None) -> None:
    run_id = command.words[0]
    expire(svc)  # a request past its window is settled now, not at the next sweep
    approval, rb_id, settings = _request_of(svc, run_id)
    chat = svc.exposed[rb_id][1]
    svc.authorise(asker, settings, needs="admin" if chat == "admin" else "operator",
                  what=f"approving {rb_id} on {approval.env}", runbook=rb_id)
    request = svc.store.request(run_id)
    if request is None:
        raise UsageError(f"run {run_id} was not requested in chat; approve it where it was asked for")
    try:
        approval = svc.approvals.approve(run_id, str(asker.who), expected_hash)
    except ApprovalRequired as exc:
        _settle(svc, svc.approvals.get(run_id))  # decided against by someone else (or the sweep) just now
        svc.audit(asker, "chatops.approve", target=approval.env, runbook=rb_id, run_id=run_id, result=f"refused: {exc}")
        svc.whisper(asker, plain(str(exc)))
        return
    svc.audit(asker, "chatops.approve", target=approval.env, runbook=rb_id, run_id=run_id,
              result=f"approved the request of {approval.requested_by}")
    channel, thread = request["channel"], request.get("thread_ts")
    svc.poster.post(channel, f"<@{asker.who.user_id}> approved run {run_id}; starting it", thread_ts=thread)
    result = execute(svc, channel, thread, request["words"], actor=approval.requested_by, approved_run=run_id)
    _settle_unstarted(svc, run_id, result.last_line or EXIT_MEANING.get(result.code, "did not start"))


def deny(svc: Any, asker: Any, command: Any) -> None:
    run_id = command.words[0]
    expire(svc)
    approval, rb_id, settings = _request_of(svc, run_id)
    if approval.requested_by != str(asker.who):  # one's own request may always be withdrawn
        svc.authorise(asker, settings, needs="operator", what=f"denying {rb_id} on {approval.env}", runbook=rb_id)
    try:
        _settle(svc, svc.approvals.deny(run_id, str(asker.who)))
    except ApprovalRequired as exc:
        _settle(svc, svc.approvals.get(run_id))
        svc.whisper(asker, plain(str(exc)))
        return
    svc.audit(asker, "chatops.deny", target=approval.env, runbook=rb_id, run_id=run_id, result="denied")
    request = svc.store.request(run_id) or {}
    svc.poster.post(request.get("channel", asker.channel), f"<@{asker.who.user_id}> denied run {run_id}",
                    thread_ts=request.get("thread_ts"))


def expire(svc: Any) -> None:
    """Settle the requests whose approval window passed (each seen by one replica only)."""
    for approval in svc.approvals.expire_due():
        _settle(svc, approval)
        request = svc.store.request(approval.run_id) or {}
        if request:
            svc.poster.post(request["channel"], f"run {approval.run_id} expired: nobody approved it in time",
                            thread_ts=request.get("thread_ts"))


def _request_of(svc: Any, run_id: str) -> tuple[Any, str, Any]:
    approval = svc.approvals.get(run_id)
    if approval is None:
        raise UsageError(f"no approval request for run {run_id} (see `{svc.config.command} runs`)")
    if approval.runbook not in svc.exposed:
        raise UsageError(f"run {run_id} is {approval.runbook}, which chat no longer offers")
    return approval, approval.runbook, svc.settings_for(approval.env)


def _settle(svc: Any, approval: Any) -> None:
    """A request decided against (denied, expired) ends as refused in the journal. Whoever sees the
    decision first settles it (it is idempotent), so no one is told "denied" or "expired" while the
    journal still says the run is waiting."""
    from aep_ops.engine.approvals import DENIED, EXPIRED

    if approval is not None and approval.state == DENIED:
        _settle_unstarted(svc, approval.run_id, f"denied by {approval.decided_by}")
    elif approval is not None and approval.state == EXPIRED:
        _settle_unstarted(svc, approval.run_id, f"no approval before {approval.expires_at}")


def _settle_unstarted(svc: Any, run_id: str, why: str) -> None:
    """A request that will not run (denied, expired, refused when started) ends as refused."""
    from aep_ops.engine import journal as jr

    run = svc.journal.get_run(run_id)
    if run is not None and run.status == jr.RUN_AWAITING_APPROVAL:
        svc.journal.finish_run(run_id, jr.RUN_REFUSED, why)


def execute(svc: Any, channel: str, thread: str | None, words: list[str], *, actor: str,
            approved_run: str | None = None) -> Any:
    """Run ``aep-ops WORDS`` for the chat, progress in the thread, then the CLI's summary."""
    progress = Progress(svc.poster, channel, thread)
    result = svc.children.run(words, actor=actor, approved_run=approved_run, on_event=progress.event)
    progress.flush()
    head = f"*{plain(words[0])}*: {EXIT_MEANING.get(result.code, f'exit {result.code}')} (exit {result.code})"
    body = code(result.stdout, f"`inv runs.show {result.run_id}` has it all" if result.run_id else "")
    tail = f"\n`{plain(result.last_line)}`" if result.last_line else ""
    svc.poster.post(channel, f"{head}\n{body}{tail}".rstrip(), thread_ts=thread)
    return result


class Progress:
    """One message in the thread, edited as steps finish (at most once a second)."""

    def __init__(self, poster: Any, channel: str, thread: str | None) -> None:
        self.poster, self.channel, self.thread = poster, channel, thread
        self.ts: str | None = None
        self.lines: list[str] = []
        self.shown = 0.0
        self.dirty = False

    def event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "run.start":
            self.lines = [f"run {event.get('run_id')} on {event.get('env')}: {event.get('steps')} steps"]
            self.ts = self.poster.post(self.channel, plain(self.lines[0]), thread_ts=self.thread)
            self.shown = time.monotonic()
            return
        if kind == "step.start":
            self.lines.append(f"[{event.get('step_number')}/{event.get('steps')}] {event.get('title')}")
        elif kind == "step.done" and len(self.lines) > 1:
            self.lines[-1] += f": {event.get('status')} ({event.get('duration')} s)"
        else:
            return
        self.dirty = True
        if time.monotonic() - self.shown >= UPDATE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.ts and self.dirty:
            self.poster.update(self.channel, self.ts, plain("\n".join(self.lines)))
            self.shown, self.dirty = time.monotonic(), False
