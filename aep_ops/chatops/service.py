"""The chat service's state and its bounded worker pool, and the commands that only read
(help, runs, status). Listeners acknowledge first and hand the command over here: nothing in
this module runs before Slack has its 200."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from aep_ops.base.errors import AepError, UsageError
from aep_ops.base.log import audit, bind, get_logger, unbind
from aep_ops.base.redact import redact
from aep_ops.chatops.child import Children
from aep_ops.chatops.identity import GroupResolver, Identity
from aep_ops.chatops.rbac import Denied
from aep_ops.chatops.slack_out import Poster, code, plain

log = get_logger(__name__)


@dataclass(frozen=True)
class Asker:
    """Who asked, and where to answer."""

    who: Identity
    channel: str
    text: str = ""


class ChatOps:
    def __init__(self, settings: Any, config: Any, exposed: dict[str, tuple[Any, Any]]) -> None:
        from aep_ops.chatops.store import ChatStore
        from aep_ops.engine.approvals import Approvals
        from aep_ops.engine.journal import Journal

        self.settings = settings  # the service's own (state_dir, journal): each command loads its environment's
        self.config = config
        self.exposed = exposed
        self.journal = Journal.open(settings)
        self.store = ChatStore(self.journal)
        self.approvals = Approvals(self.journal)
        self.poster = Poster(config.bot_token, config.api_url)
        self.groups = GroupResolver(self.poster.group_members, config.usergroup_cache_seconds)
        self.children = Children()
        self._pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="chatops")
        self._slots = threading.BoundedSemaphore(config.workers + config.queue)

    # --- the pool ---

    def submit(self, func: Callable[..., None], *args: Any) -> bool:
        """Queue a command for a worker; False when every worker is busy and the queue is full."""
        if not self._slots.acquire(blocking=False):
            return False

        def work() -> None:
            try:
                func(*args)
            except Exception:  # noqa: BLE001 - one command's bug must not kill the worker
                log.exception("chatops.command_crashed")
            finally:
                self._slots.release()

        self._pool.submit(work)
        return True

    def stop(self, grace: float = 30.0) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.children.stop_all(grace)

    # --- commands ---

    def on_command(self, asker: Asker) -> None:
        self.guarded(asker, lambda: self._dispatch(asker))

    def guarded(self, asker: Asker, handler: Callable[[], None]) -> None:
        """Run one command's work; a refusal or a user's mistake is the reply, never a traceback."""
        bind(actor=str(asker.who))
        try:
            handler()
        except Denied as exc:  # audited with its reason where it was decided
            self.whisper(asker, plain(str(exc)))
        except AepError as exc:
            self.audit(asker, "chatops.command", target="-", result=f"refused: {exc}")
            self.whisper(asker, f"error: {plain(str(exc))}")
        except Exception as exc:  # noqa: BLE001 - a bug: the details to the log, one line to the asker
            log.exception("chatops.internal_error")
            self.whisper(asker, f"internal error: {type(exc).__name__} (details in the chat service's log)")
        finally:
            unbind("actor")

    def _dispatch(self, asker: Asker) -> None:
        from aep_ops.chatops import flows
        from aep_ops.chatops.commands import parse, runbook_help

        command = parse(asker.text, {k: v[0] for k, v in self.exposed.items()}, self.config.command)
        if command.verb == "help":
            return self.whisper(asker, self.help_text())
        if command.verb == "run" and command.help:
            return self.whisper(asker, code(runbook_help(command.runbook, self.config.command)))
        if command.verb == "runs":
            return self.list_runs(asker, command)
        if command.verb == "status":
            return self.show_run(asker, command)
        flow = {"run": flows.request_run, "approve": flows.approve, "deny": flows.deny}[command.verb]
        flow(self, asker, command)

    def help_text(self) -> str:
        c = self.config.command
        lines = [f"`{c} RUNBOOK --env ENV [flags]` run a runbook (`{c} RUNBOOK --help` for its flags)",
                 f"`{c} runs --env ENV [--runbook ID] [--limit N]` recent runs",
                 f"`{c} status RUN_ID` one run, step by step",
                 f"`{c} approve RUN_ID` / `{c} deny RUN_ID` decide on someone else's production request",
                 "Runbooks offered here:"]
        for rb_id, (rb, chat) in sorted(self.exposed.items()):
            tags = ("changes" if rb.mutating else "read-only") + (", admins only" if chat == "admin" else "")
            lines.append(f"  `{rb_id}` ({tags}): {plain(rb.summary)}")
        return "\n".join(lines)

    def list_runs(self, asker: Asker, command: Any) -> None:
        env = self.env_of(command.kwargs.get("env"))
        settings = self.settings_for(env)
        self.authorise(asker, settings, needs="viewer", what="listing runs")
        words = ["runs.list", *command.words] + ([] if command.kwargs.get("env") else ["--env", env])
        result = self.children.run(words, actor=str(asker.who))
        self.whisper(asker, code(result.stdout or result.last_line))

    def show_run(self, asker: Asker, command: Any) -> None:
        run = self.journal.get_run(command.kwargs["run_id"])
        if run is None:
            raise UsageError(f"no run {command.kwargs['run_id']} in the journal (see `{self.config.command} runs`)")
        self.authorise(asker, self.settings_for(run.env), needs="viewer", what="showing a run")
        result = self.children.run(["runs.show", *command.words], actor=str(asker.who))
        self.whisper(asker, code(result.stdout or result.last_line, f"`inv runs.show {run.id}` has it all"))

    # --- shared by the flows ---

    def env_of(self, given: str | None) -> str:
        env = given or self.config.default_env
        if not env or not str(env).strip():
            raise UsageError("name the environment: --env ENV (chat has no default unless chatops.default_env"
                             " is set)")
        return env

    def settings_for(self, env: str) -> Any:
        from aep_ops import config
        from aep_ops.chatops.rbac import check_members

        settings = config.load(env)
        check_members(settings)
        return settings

    def authorise(self, asker: Asker, settings: Any, *, needs: str, what: str, runbook: str | None = None) -> Any:
        """The RBAC decision, audited either way; raises (the reason is the reply) when refused."""
        from aep_ops.chatops.rbac import decide

        decision = decide(settings, asker.who, self.groups, needs=needs, what=what)
        self.audit(asker, "chatops.decision", target=settings.env_name, runbook=runbook,
                   result=("allowed: " if decision.allowed else "denied: ") + decision.reason)
        if not decision.allowed:
            raise Denied(f"denied: {decision.reason}")
        return decision

    def audit(self, asker: Asker, action: str, *, target: str, result: str, **extra: Any) -> None:
        try:
            audit(self.settings.state_dir, action, target=target, args={"command": asker.text, **extra},
                  result=redact(result), actor=str(asker.who), channel=asker.channel)
        except AepError as exc:  # the audit log is unwritable: say so in the service's log, go on refusing
            log.error("chatops.audit_failed", error=str(exc))

    def whisper(self, asker: Asker, text: str) -> None:
        self.poster.whisper(asker.channel, asker.who.user_id, text)
