"""``service.restart``: a rolling restart of the API service over the hosts of one role, with the
health gates of patching.

Three engine steps: ``plan_restart`` (read-only: the role's hosts, their load-balancer
registration, health, capacity and batches), ``run_restart`` (each batch in turn, one host at a
time by default: drain, restart the unit, wait for N consecutive HTTP 200s of the host's
health_url, return; a host that fails stops the rollout) and ``verify_service`` (soft: every
host done, healthy and in service). The pieces are patch.rolling's: the per-host state machine
and state file (``aep_ops.patch.host``/``state``), the load balancer and capacity rule
(``patching.lb``, ``patching.min_healthy``) and the batch driver; this module only plans and
orders. The state file lives in STATE_DIR/service/ENV/RUN_ID.json, so ``--resume RUN_ID``
finishes the host that was mid-way and skips hosts already done. Heavy imports happen inside
functions: the CLI imports this module to list tasks.
"""

from __future__ import annotations

from typing import Any

from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed
from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step

AREA = "service"  # the state files' directory under STATE_DIR
ROLE_REQUIRED = ("--role is required: name the role whose hosts run the service (e.g. --role api);"
                 " a restart never widens to every host")


def _config(ctx: RunContext) -> Any:
    from aep_ops.service.host import ServiceConfig

    return ServiceConfig.from_settings(ctx.settings, unit=ctx.params.get("unit") or None)


def _state(ctx: RunContext) -> Any:
    from aep_ops.patch.state import RolloutState, state_path

    if ctx.dry_run or not ctx.run_id:
        return None
    return RolloutState.load(state_path(ctx.state_dir, ctx.env_name, ctx.run_id, AREA))


def _ensure_state(ctx: RunContext) -> Any:
    from aep_ops.patch.state import RolloutState, state_path

    state = _state(ctx)
    if state is None:
        plan = ctx.outputs["plan_restart"]
        state = RolloutState.create(state_path(ctx.state_dir, ctx.env_name, ctx.run_id, AREA), run_id=ctx.run_id,
                                    env=ctx.env_name, hosts=plan["hosts"], canary=[], batches=plan["batches"],
                                    up_to_date=[])
    return state


def restart_order(names: list[str], healthy: set[str]) -> list[str]:
    """Hosts not healthy in service first (restarting them costs no capacity, and they are the
    likely reason for the restart), then the others; inventory order within each."""
    return [n for n in names if n not in healthy] + [n for n in names if n in healthy]


def short_of_capacity(batches: list[list[str]], healthy: set[str], floor: int) -> tuple[int, int] | None:
    """(batch number, hosts left serving) of the first batch that would leave fewer than ``floor``
    hosts healthy in service, counting earlier batches as back (each passed its health gate, or
    the rollout stopped there); None when every batch fits."""
    serving = set(healthy)
    for number, batch in enumerate(batches, 1):
        left = len(serving - set(batch))
        if left < floor:
            return number, left
        serving |= set(batch)
    return None


def _todo(ctx: RunContext, state: Any) -> list[str]:
    from aep_ops.patch.runbooks import unfinished

    return [n for batch in ctx.output("plan_restart", "batches") for n in unfinished(state, batch)]


class PlanRestart(Step):
    id = "plan_restart"
    title = "Plan: the role's hosts, load-balancer registration, health, capacity and batches"

    def check(self, ctx):
        from aep_ops.fleet.inventory import hosts_for, role_flag
        from aep_ops.fleet.loadbalancer import load_balancer_for
        from aep_ops.patch.runbooks import chunk, healthy_in_service, min_healthy, require_instance_ids, resolve_size
        from aep_ops.patch.state import host_dicts, left_out_of_service

        earlier = left_out_of_service(ctx.state_dir, ctx.env_name, except_run=ctx.run_id, area=AREA)
        if earlier:
            run_id, left = next(iter(earlier.items()))
            raise UsageError(f"run {run_id} left {', '.join(left)} out of service; finish it first (`inv"
                             f" service.restart --env {ctx.env_name} --resume {run_id}`). Nothing was changed")
        hosts = {h.name: h for h in hosts_for(ctx.settings, role=role_flag(ctx.params["role"]))}
        if blind := [n for n, h in hosts.items() if not h.health_url]:
            raise UsageError(f"host(s) {', '.join(blind)} have no health_url: a restart is gated on it; set"
                             " hosts[].health_url (or the aep:health_url tag). Nothing was changed")
        lb = load_balancer_for(ctx.settings)
        require_instance_ids(lb, hosts)
        in_lb = lb.in_service(hosts.values())
        healthy = healthy_in_service(ctx, hosts, lb)
        size = resolve_size(ctx.params["batch"], len(hosts), "--batch", zero_ok=False)
        batches = chunk(restart_order(list(hosts), healthy), size)
        floor = min_healthy(ctx.settings)
        if short := short_of_capacity(batches, healthy, floor):
            number, left = short
            raise UsageError(
                f"capacity: {len(healthy)} of {len(hosts)} hosts of role {ctx.params['role']} are healthy in service;"
                f" batch {number} ({', '.join(batches[number - 1])}) would leave {left}, below patching.min_healthy="
                f"{floor}; use a smaller --batch, bring hosts back first, or accept an outage with"
                " patching.min_healthy: 0. Nothing was changed")
        unit = _config(ctx).unit
        summary = (f"{len(hosts)} host(s) of role {ctx.params['role']} run {unit}: {len(in_lb)} in the load"
                   f" balancer ({lb.kind}), {len(healthy)} healthy in service, min {floor};"
                   f" {len(batches)} batch(es) of up to {size}")
        if sick := [n for n in hosts if n not in healthy]:
            summary += f"; not healthy in service, restarted first: {', '.join(sick)}"
        return Plan.unchanged(summary, hosts=host_dicts(list(hosts.values())), batches=batches, batch_size=size,
                              in_lb=sorted(in_lb), healthy=sorted(healthy), min_healthy=floor, lb=lb.kind,
                              unit=unit)


class RunRestart(Step):
    id = "run_restart"
    title = "Restart the hosts batch by batch: drain, restart, health gate, return"
    requires_approval = True

    def check(self, ctx):
        todo = _todo(ctx, _state(ctx))
        if not todo:
            return Plan.unchanged("every host restarted")
        return Plan.change(f"restart {ctx.output('plan_restart', 'unit')} on {len(todo)} host(s), "
                           f"{ctx.output('plan_restart', 'batch_size')} at a time: {', '.join(todo)}")

    def apply(self, ctx, plan):
        from functools import partial

        from aep_ops.fleet.loadbalancer import load_balancer_for
        from aep_ops.patch.runbooks import describe_failed, ensure_capacity, report, run_hosts, unfinished
        from aep_ops.service.host import HostRestart

        state, cfg = _ensure_state(ctx), _config(ctx)
        batches = ctx.output("plan_restart", "batches")
        lb, hosts = load_balancer_for(ctx.settings), state.hosts()
        for number, batch in enumerate(batches, 1):
            todo = unfinished(state, batch)
            if not todo:
                continue
            ensure_capacity(ctx, hosts, lb, todo, where=f"{state.path} shows this run's hosts")
            run_hosts(ctx, state, todo, f"batch {number}/{len(batches)}", machine=partial(HostRestart, cfg=cfg))
            failed = state.failed()
            if failed:
                left = [n for n in _todo(ctx, state) if n not in failed]
                report(ctx, state, self.id)
                raise StepFailed(f"restart stopped at batch {number}/{len(batches)}: {describe_failed(failed)}."
                                 f" Failed hosts stay out of service; not started: {', '.join(left) or 'none'}."
                                 f" Fix them, then `inv service.restart --env {ctx.env_name} --resume {ctx.run_id}`")
        report(ctx, state, self.id)
        return {"hosts": state.summary()}

    def verify(self, ctx, outputs):
        if left := _todo(ctx, _ensure_state(ctx)):
            raise VerificationFailed(f"host(s) not restarted: {', '.join(left)}")


class VerifyService(Step):
    id = "verify_service"
    title = "Verify: every host restarted, healthy and in service"
    soft = True

    def check(self, ctx):
        from aep_ops.fleet.inventory import Host
        from aep_ops.fleet.loadbalancer import load_balancer_for
        from aep_ops.patch.runbooks import healthy_in_service

        if ctx.dry_run:
            return Plan.unknown("the restart has not run")
        hosts = {h["name"]: Host(**h) for h in ctx.output("plan_restart", "hosts")}
        problems = [f"{n} was not restarted" for n in _todo(ctx, _state(ctx))]
        serving = healthy_in_service(ctx, hosts, load_balancer_for(ctx.settings))
        problems += [f"{n} is not healthy in service" for n in hosts if n not in serving]
        if problems:
            raise VerificationFailed("; ".join(problems), details={"problems": problems})
        return Plan.unchanged(f"all {len(hosts)} hosts restarted, healthy and in service")


@runbook("service.restart", steps=[PlanRestart, RunRestart, VerifyService],
         summary="Rolling restart of the API service on one role's hosts: drain, restart, health gate, return",
         help={"role": "the role whose hosts run the service (required)",
               "batch": "hosts restarted at once: N, or P% of the role's hosts (default service.batch, else 1)",
               "unit": "systemd unit to restart (default service.unit, else aep-api)"})
def restart(ctx: RunContext, *, role: str | None = None, batch: str | None = None, unit: str | None = None) -> None:
    """Validate the flags before the journal, the lock or any host; the steps do the work."""
    from aep_ops.fleet.inventory import hosts_for, role_flag
    from aep_ops.fleet.sshsetup import ssh_files
    from aep_ops.patch.runbooks import parse_size
    from aep_ops.service.host import ServiceConfig, unit_name

    if not ctx.options.resume:  # a resumed run's parameters are its journaled ones
        if role is None:
            raise UsageError(ROLE_REQUIRED)
        if unit is not None:
            unit_name(unit)
        hosts_for(ctx.settings, role=role_flag(role))  # an unknown role: exit 2 naming the roles there are
    chosen = batch if batch is not None else ServiceConfig.from_settings(ctx.settings).batch
    parse_size(chosen, "--batch" if batch is not None else f"environments.{ctx.env_name}.service.batch",
               zero_ok=False)
    ssh_files(ctx.settings)
    ctx.params.update(role=role_flag(role), batch=chosen, unit=unit)
