"""``metrics.rules`` and ``metrics.check``: the Prometheus alerting rules of an environment,
generated from its scheduled jobs and objectives (aep_ops.metrics.rules); the run metrics
themselves are written by every run (aep_ops.metrics.run_hooks)."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import check_output_path, front_door, load_settings

SET_HELP = "override a configuration value, KEY=VALUE (repeatable)"


@task(help={"env": "environment whose rules to generate (default: local)",
            "out": "write the rules to this file (atomically) instead of printing them",
            "set": SET_HELP}, iterable=["set"])
def rules(c, env=None, out=None, set=None):
    """Print (or write to --out) the Prometheus alerting rules of the environment: stale drill and
    backup, failing archiving, expiring certificates, and a dead-man's switch per scheduled runbook."""
    with front_door():
        import sys

        from aep_ops.metrics.rules import for_settings, render

        target = None if out is None else check_output_path(out, "--out", "leave the flag out to print the rules")
        settings = load_settings(env, set or [])
        text = render(for_settings(settings), command=f"inv metrics.rules --env {settings.env_name}")
        if target is None:
            sys.stdout.write(text)
            return
        from aep_ops.base.atomicfile import replace_file

        replace_file(target, text.encode())
        print(f"{text.count('- alert: ')} alerting rule(s) for {settings.env_name} written to {target}",
              file=sys.stderr)


@task(help={"env": "environment whose generated rules to check (default: local)", "set": SET_HELP},
      iterable=["set"])
def check(c, env=None, set=None):
    """Generate the environment's rules and have `promtool check rules` validate them (exit 2
    without promtool, 1 when it refuses them)."""
    with front_door():
        from aep_ops.metrics.promtool import check_rules
        from aep_ops.metrics.rules import for_settings, render

        settings = load_settings(env, set or [])
        print(check_rules(render(for_settings(settings))))

