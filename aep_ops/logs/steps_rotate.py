"""The steps of logs.rotate: each host's logrotate file (rewritten only when it changed, validated
by ``logrotate -d`` first), then logrotate run with its own state file."""

from __future__ import annotations

from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import StepFailed, VerificationFailed


def _wanted(ctx, host, host_sources) -> str:
    from aep_ops.logs.render import render
    from aep_ops.logs.settings import logs_settings

    return render(ctx.env_name, host.name, host_sources,
                  reopen_timeout=int(logs_settings(ctx.settings)["reopen_timeout"]))


def _parallel(ctx) -> int:
    from aep_ops.fleet.inventory import parallel_for

    return parallel_for(ctx.settings)


def _reopen_timeout(ctx) -> int:
    from aep_ops.logs.settings import logs_settings

    return int(logs_settings(ctx.settings)["reopen_timeout"])


def _stale_hosts(ctx) -> tuple[list[str], list[str]]:
    """(hosts whose file differs from the rendering, "host: why" for hosts that could not be read)."""
    from aep_ops.logs.hostwork import config_paths, on_each_host
    from aep_ops.executors.files import read_file

    def differs(executor, host, host_sources):
        return read_file(executor, config_paths(ctx.settings, host)[0]) != _wanted(ctx, host, host_sources)

    answers = on_each_host(ctx.settings, ctx.params["sources"], differs, parallel=_parallel(ctx), timeout=300)
    return ([h.name for h, value, why in answers if not why and value],
            [f"{h.name}: {why}" for h, _, why in answers if why])


class LogrotateFiles(Step):
    id = "logrotate_files"
    title = "Install each host's logrotate file (validated by logrotate -d first)"
    requires_approval = True

    def check(self, ctx):
        stale, unreadable = _stale_hosts(ctx)
        if unreadable:
            raise StepFailed("cannot read the installed logrotate file on " + "; ".join(unreadable))
        if not stale:
            return Plan.unchanged("every host's logrotate file is up to date")
        return Plan.change(f"write the logrotate file on {len(stale)} host(s): {', '.join(stale)}", hosts=stale)

    def apply(self, ctx, plan):
        from aep_ops.logs.hostwork import config_paths, on_each_host
        from aep_ops.logs.rotate import install

        stale = set(plan.details["hosts"])

        def write(executor, host, host_sources):
            if host.name in stale:
                install(executor, config_paths(ctx.settings, host)[0], _wanted(ctx, host, host_sources))
                ctx.progress(f"{host.name}: logrotate file installed")

        failed = [f"{h.name}: {why}" for h, _, why in on_each_host(ctx.settings, ctx.params["sources"], write,
                                                                    parallel=_parallel(ctx), timeout=600) if why]
        if failed:
            raise StepFailed("logrotate file not installed on " + "; ".join(failed))
        return {"hosts": sorted(stale)}

    def verify(self, ctx, outputs):
        stale, unreadable = _stale_hosts(ctx)
        if stale or unreadable:
            raise VerificationFailed("logrotate file not as rendered on " + ", ".join(stale + unreadable))


class RunLogrotate(Step):
    id = "run_logrotate"
    title = "Run logrotate with its own state file on every host"
    requires_approval = True

    def check(self, ctx):
        from aep_ops.logs.targets import by_host

        hosts = [h.name for h, _ in by_host(ctx.settings, ctx.params["sources"])]
        force = " (forced: every file rotates)" if ctx.params["force"] else ""
        return Plan.change(f"run logrotate on {len(hosts)} host(s){force}: {', '.join(hosts)}")

    def apply(self, ctx, plan):
        from aep_ops.logs import rotate
        from aep_ops.logs.hostwork import config_paths, on_each_host

        def run(executor, host, host_sources):
            config, state = config_paths(ctx.settings, host)
            outcome = rotate.run(executor, host.name, config, state, force=ctx.params["force"])
            outcome.reopened = rotate.reopen_stragglers(executor, host.name, host_sources, _reopen_timeout(ctx))
            for line in outcome.reopened:
                ctx.progress(f"{host.name}: {line}")
            ctx.progress(f"{host.name}: {len(outcome.rotated)} file(s) rotated"
                         + (f", {len(outcome.errors)} error(s)" if outcome.errors else ""))
            return outcome

        answers = on_each_host(ctx.settings, ctx.params["sources"], run, parallel=_parallel(ctx), timeout=None)
        outcomes = [value.to_json() for _, value, why in answers if not why]
        ctx.summary["hosts"] = outcomes
        windows = [dict(w, host=o["host"]) for o in outcomes for w in o["copytruncate_loss_windows"]]
        if windows:
            ctx.summary["copytruncate_loss_windows"] = windows
            for w in windows:
                ctx.progress(f"{w['host']}: copytruncate of {w['file']}: lines written in a window of at most"
                             f" {w['window_ms']} ms were lost (use create + a reopen signal to lose none)")
        problems = [f"{h.name}: {why}" for h, _, why in answers if why]
        problems += [f"{o['host']}: " + ("; ".join(o["errors"]) or f"logrotate exited {o['exit_status']}")
                     for o in outcomes if o["errors"] or o["exit_status"]]
        if problems:
            raise StepFailed("logrotate failed on " + " | ".join(problems))
        return {"rotated": sum(len(o["rotated"]) for o in outcomes), "loss_windows": windows}
