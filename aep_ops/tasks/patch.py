"""``patch.status`` (where every host of a rollout is) and ``patch.abandon`` (give a stuck rollout up)."""

from __future__ import annotations

from invoke import task

from aep_ops.tasks.frontdoor import front_door, load_settings, print_json


@task(help={"env": "environment (default: local)", "run": "a patch.rolling run id (default: the newest)",
            "json": "print JSON"})
def status(c, env=None, run=None, json=False):
    """Show each host's state in a patch.rolling run, from its state file and the journal."""
    from aep_ops.patch.state import rollout_status

    with front_door():
        settings = load_settings(env)
        report = rollout_status(settings, run)
        if json:
            print_json(report)
            return
        if report["run_id"] is None:
            print(f"no patch.rolling run on {report['env']}")
            return
        print(f"patch.rolling on {report['env']}: run {report['run_id']} ({report['status']},"
              f" started {report['started_at']})")
        width = max([len(r["host"]) for r in report["hosts"]] + [4])
        print(f"  {'host':<{width}}  {'state':<12} {'step':<8} {'pkgs':>4}  since")
        for r in report["hosts"]:
            print(f"  {r['host']:<{width}}  {r['state']:<12} {r['failed_step'] or '':<8} {r['packages']:>4}  {r['at']}"
                  + (f"\n  {'':<{width}}  error: {r['error']}" if r["error"] else ""))


@task(help={"run": "the patch.rolling run id to give up", "env": "environment (default: local)",
            "reason": "why (required; goes to the audit log)", "yes": "approve on a production environment",
            "json": "print JSON"})
def abandon(c, run, env=None, reason="", yes=False, json=False):
    """Give up a rollout that cannot be finished, so that new ones may start; its hosts stay as they are."""
    from aep_ops.patch.abandon import abandon_rollout

    with front_door():
        settings = load_settings(env)
        result = abandon_rollout(settings, run, reason=reason, yes=yes)
        if json:
            print_json(result)
            return
        a = result["abandoned"]
        print(f"run {run} {'abandoned' if result['changed'] else 'was already abandoned'} by {a['by']} at {a['at']}:"
              f" {a['reason']}")
        if result["out_of_service"]:
            print(f"still out of service, to handle by hand: {', '.join(result['out_of_service'])}"
                  f" (`inv patch.status --env {settings.env_name} --run {run}`)")
