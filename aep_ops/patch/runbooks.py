"""``patch.rolling``: OS patching of a fleet without taking the service down.

Four engine steps carry the rollout: ``plan_batches`` (read-only: pending updates per host,
capacity, canary and batches), ``run_canary`` and ``run_batches`` (drive the per-host state
machine of ``patch_host`` over each batch, in parallel within a batch), ``verify_fleet``
(soft: every host up to date, healthy and in service). Per-host progress lives in the
rollout's state file (``patch_state``); the engine journals the steps, so ``--resume``
skips finished steps and the batch steps skip finished hosts. Heavy imports (boto3,
paramiko) happen inside functions: the CLI imports this module to list tasks.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Callable

from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed
from aep_ops.base.log import audit, get_logger
from aep_ops.patch.host import HostPatch, PatchConfig, health_probe, pending_packages
from aep_ops.patch.state import RolloutState, host_dicts, left_out_of_service, state_path

log = get_logger(__name__)

PLAN_TIMEOUT = 900  # the read-only fan-out of the plan (pending checks) ends by then, whatever hangs
PROBE_TIMEOUT = 60
_SIZE = re.compile(r"^\s*(\d+)\s*(%?)\s*$")


# -- sizes and capacity (pure) --------------------------------------------------------------------


def parse_size(text: str, flag: str, *, zero_ok: bool) -> tuple[int, bool]:
    """``N`` or ``P%`` -> (number, is_percent); UsageError names the flag."""
    match = _SIZE.match(str(text))
    if not match:
        raise UsageError(f"{flag} {text!r}: expected a number of hosts (N) or a share of them (P%)")
    value, percent = int(match[1]), bool(match[2])
    if (value < (0 if zero_ok else 1)) or (percent and value > 100):
        low = 0 if zero_ok else 1
        raise UsageError(f"{flag} {text!r}: must be {low}..N hosts or {low}..100%")
    return value, percent


def resolve_size(text: str, total: int, flag: str, *, zero_ok: bool) -> int:
    """Hosts that ``N``/``P%`` means out of ``total`` (a percentage rounds down; a batch is >= 1)."""
    value, percent = parse_size(text, flag, zero_ok=zero_ok)
    if not percent:
        return value
    return max(0 if zero_ok else 1, total * value // 100)


def chunk(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def split_rollout(names: list[str], pending: dict[str, Any], unreachable: dict[str, Any], *, canary: int,
                  batch: str, max_failed: str) -> dict[str, Any]:
    """Hosts to patch, canary, batches and the failure limit, in inventory order (``names``).
    A share (P%) of --batch or --max-failed counts against all hosts of the rollout, up-to-date
    ones included, so the same flags mean the same hosts whatever is pending."""
    todo = [n for n in names if n in pending or n in unreachable]
    canary_hosts = [n for n in names if n in pending][:canary]
    size = resolve_size(batch, len(names), "--batch", zero_ok=False)
    return {"todo": todo, "canary": canary_hosts, "batches": chunk([n for n in todo if n not in canary_hosts], size),
            "batch_size": size, "max_failed": resolve_size(max_failed, len(names), "--max-failed", zero_ok=True)}


def min_healthy(settings: Any) -> int:
    configured = (settings.env.get("patching") or {}).get("min_healthy")
    return int(configured) if configured is not None else (2 if settings.production else 1)


# -- fleet access ---------------------------------------------------------------------------------


def _fan_out(ctx: RunContext, func: Callable[[Any], Any], items: dict[str, Any], *,
             timeout: float) -> dict[str, Any]:
    """``func`` on every item, at most inventory.parallel at once, all within ``timeout``:
    name -> Answer (``ok`` and ``value``, or ``why`` not). A straggler never delays the answer."""
    from aep_ops.executors.fleet import map_bounded
    from aep_ops.fleet.inventory import parallel_for

    answers = map_bounded(func, items.values(), parallel=parallel_for(ctx.settings), timeout=timeout)
    return dict(zip(items, answers))


def connector(ctx: RunContext, host: Any) -> Callable[[], Any]:
    """A function that opens an SSH executor to ``host`` (checked now: config errors before any host)."""
    from aep_ops.fleet.inventory import executor_for

    identity, known = ctx.params.get("identity") or None, ctx.params.get("known_hosts") or None
    executor_for(ctx.settings, host, identity=identity, known_hosts=known)  # config errors now, not mid-batch
    return lambda: executor_for(ctx.settings, host, identity=identity, known_hosts=known)


def _pending_all(ctx: RunContext, hosts: dict[str, Any]) -> dict[str, Any]:
    cfg = PatchConfig.from_settings(ctx.settings)
    connectors = {name: connector(ctx, h) for name, h in hosts.items()}

    def probe(name: str) -> list[str]:
        with connectors[name]() as executor:
            return pending_packages(executor, cfg)

    return _fan_out(ctx, probe, {n: n for n in hosts}, timeout=PLAN_TIMEOUT)


def healthy_in_service(ctx: RunContext, hosts: dict[str, Any], lb: Any) -> set[str]:
    """Hosts that take traffic now: in the load balancer and answering their health URL."""
    in_lb = lb.in_service(hosts.values())
    probes = _fan_out(ctx, lambda h: health_probe(h.health_url, 5)[0] if h.health_url else True,
                      {n: h for n, h in hosts.items() if n in in_lb}, timeout=PROBE_TIMEOUT)
    return {n for n, answer in probes.items() if answer.ok and answer.value}


def _load_balancer(ctx: RunContext) -> Any:
    from aep_ops.fleet.loadbalancer import load_balancer_for

    return load_balancer_for(ctx.settings)


def _state(ctx: RunContext) -> RolloutState | None:
    if ctx.dry_run or not ctx.run_id:
        return None
    state = RolloutState.load(state_path(ctx.state_dir, ctx.env_name, ctx.run_id))
    if state is not None and state.abandoned:
        a = state.abandoned
        raise UsageError(f"run {ctx.run_id} was abandoned by {a['by']} at {a['at']} ({a['reason']});"
                         " start a new run instead of resuming it")
    return state


def _ensure_state(ctx: RunContext) -> RolloutState:
    state = _state(ctx)
    if state is None:
        plan = ctx.outputs["plan_batches"]
        state = RolloutState.create(state_path(ctx.state_dir, ctx.env_name, ctx.run_id), run_id=ctx.run_id,
                                    env=ctx.env_name, hosts=plan["hosts"], canary=plan["canary"],
                                    batches=plan["batches"], up_to_date=plan["up_to_date"])
    return state


def unfinished(state: RolloutState | None, names: list[str]) -> list[str]:
    return [n for n in names if state is None or not state.finished(n)]


# -- steps -----------------------------------------------------------------------------------------


class PlanBatches(Step):
    id = "plan_batches"
    title = "Plan: pending updates per host, capacity, canary and batches"

    def check(self, ctx):
        from aep_ops.fleet.inventory import hosts_flag, hosts_for, role_flag

        earlier = left_out_of_service(ctx.state_dir, ctx.env_name, except_run=ctx.run_id)
        if earlier:
            run_id, hosts = next(iter(earlier.items()))
            raise UsageError(f"run {run_id} left {', '.join(hosts)} out of service or half patched; finish it first"
                             f" (`inv patch.rolling --env {ctx.env_name} --resume {run_id}`; `inv patch.status --env"
                             f" {ctx.env_name} --run {run_id}` shows where each host is). Nothing was changed")
        # "" (a run journaled before --hosts/--role were told apart from absent) means the inventory
        role, override = role_flag(ctx.params["role"] or None), hosts_flag(ctx.params["hosts"] or None)
        hosts = {h.name: h for h in hosts_for(ctx.settings, role=role, override=override)}
        lb = _load_balancer(ctx)
        require_instance_ids(lb, hosts)
        probes = _pending_all(ctx, hosts)
        pending = {n: a.value for n, a in probes.items() if a.ok and a.value}
        unreachable = {n: a.why() for n, a in probes.items() if not a.ok}
        up_to_date = [n for n, a in probes.items() if a.ok and not a.value]
        split = split_rollout(list(hosts), pending, unreachable, canary=int(ctx.params["canary"]),
                              batch=ctx.params["batch"], max_failed=ctx.params["max_failed"])
        todo, canary, batches, size = split["todo"], split["canary"], split["batches"], split["batch_size"]
        healthy = healthy_in_service(ctx, hosts, lb) if todo else set(hosts)
        floor = min_healthy(ctx.settings)
        largest = max([len(canary)] + [len(b) for b in batches])
        if todo and len(healthy) - largest < floor:
            raise UsageError(
                f"capacity: {len(healthy)} of {len(hosts)} hosts are healthy in service; taking {largest} out at once"
                f" would leave {len(healthy) - largest}, below patching.min_healthy={floor}; use a smaller --batch/"
                f"--canary (at most {max(0, len(healthy) - floor)}), or add capacity first. Nothing was changed")
        summary = (f"{len(hosts)} hosts: {len(pending)} with updates, {len(up_to_date)} up to date"
                   + (f", {len(unreachable)} not reachable ({', '.join(unreachable)})" if unreachable else ""))
        if todo:
            summary += (f"; canary {', '.join(canary) or 'none'}, {len(batches)} batch(es) of up to {size};"
                        f" {len(healthy)} healthy in service, min {floor}")
        return Plan.unchanged(summary, hosts=host_dicts(list(hosts.values())), pending=pending,
                              unreachable=unreachable, up_to_date=up_to_date, canary=canary, batches=batches,
                              healthy=sorted(healthy), min_healthy=floor, batch_size=size,
                              max_failed=split["max_failed"], lb=lb.kind)


class RunCanary(Step):
    id = "run_canary"
    title = "Patch the canary batch (must fully succeed)"
    requires_approval = True

    def check(self, ctx):
        todo = unfinished(_state(ctx), ctx.output("plan_batches", "canary"))
        if not todo:
            return Plan.unchanged("no canary needed" if not ctx.output("plan_batches", "canary") else "canary patched")
        return Plan.change(f"patch the canary {', '.join(todo)}")

    def apply(self, ctx, plan):
        state, canary = _ensure_state(ctx), ctx.output("plan_batches", "canary")
        run_hosts(ctx, state, unfinished(state, canary), "canary")
        failed = {n: e for n, e in state.failed().items() if n in canary}
        if failed:
            report(ctx, state, self.id)
            raise StepFailed(f"canary failed: {describe_failed(failed)}; the rollout stops before any other host."
                             " Failed hosts stay out of service. Fix them, then resume this run")
        report(ctx, state, self.id)  # a rollout whose canary was its only host says so too (no batch reports)
        return {"hosts": state.summary()}

    def verify(self, ctx, outputs):
        state = _ensure_state(ctx)
        if unfinished(state, ctx.output("plan_batches", "canary")):
            raise VerificationFailed("canary hosts are not all patched: " + str(state.summary()))


class RunBatches(Step):
    id = "run_batches"
    title = "Patch the remaining hosts batch by batch"
    requires_approval = True

    def check(self, ctx):
        state = _state(ctx)
        todo = [n for b in ctx.output("plan_batches", "batches") for n in unfinished(state, b)]
        if not todo:
            return Plan.unchanged("no host left to patch")
        return Plan.change(f"patch {len(todo)} host(s): {', '.join(todo)}")

    def apply(self, ctx, plan):
        state = _ensure_state(ctx)
        batches = ctx.output("plan_batches", "batches")
        limit = int(ctx.output("plan_batches", "max_failed"))
        lb, hosts = _load_balancer(ctx), state.hosts()
        for number, batch in enumerate(batches, 1):
            todo = unfinished(state, batch)
            if not todo:
                continue
            ensure_capacity(ctx, hosts, lb, todo)
            run_hosts(ctx, state, todo, f"batch {number}/{len(batches)}")
            failed = state.failed()
            if len(failed) > limit:
                left = [n for b in batches[number:] for n in unfinished(state, b) if n not in failed]
                report(ctx, state, self.id)
                raise StepFailed(f"rollout halted after batch {number}/{len(batches)}: {len(failed)} host(s) failed,"
                                 f" more than --max-failed {limit}: {describe_failed(failed)}. Failed hosts stay out"
                                 f" of service; not started: {', '.join(left) or 'none'}."
                                 " Fix the failures, then resume this run")
        failed = state.failed()
        if failed:
            report(ctx, state, self.id)
            raise StepFailed(f"every batch ran, but {len(failed)} host(s) failed (within --max-failed {limit}):"
                             f" {describe_failed(failed)}; they stay out of service. Fix them, then resume"
                             " this run to finish them")
        report(ctx, state, self.id)
        return {"hosts": state.summary()}


class VerifyFleet(Step):
    id = "verify_fleet"
    title = "Verify: every host up to date, healthy and in service"
    soft = True

    def check(self, ctx):
        state = _state(ctx)
        if ctx.dry_run and (ctx.output("plan_batches", "pending") or ctx.output("plan_batches", "unreachable")):
            return Plan.unknown("the rollout has not run")
        from aep_ops.fleet.inventory import Host

        hosts = {h["name"]: Host(**h) for h in ctx.output("plan_batches", "hosts")}
        problems = [f"{n} is {s}" for n, s in (state.summary() if state else {}).items()
                    if state is not None and not state.finished(n)]
        for name, answer in _pending_all(ctx, hosts).items():
            if not answer.ok:
                problems.append(f"{name}: {answer.why()}")
            elif answer.value:
                problems.append(f"{name} still has {len(answer.value)} pending update(s):"
                                f" {', '.join(answer.value[:5])}")
        serving = healthy_in_service(ctx, hosts, _load_balancer(ctx))
        problems += [f"{n} is not healthy in service" for n in hosts if n not in serving]
        if problems:
            raise VerificationFailed("; ".join(problems), details={"problems": problems})
        return Plan.unchanged(f"all {len(hosts)} hosts up to date, healthy and in service")


# -- driving hosts -----------------------------------------------------------------------------------


def require_instance_ids(lb: Any, hosts: dict[str, Any]) -> None:
    """A load balancer drains hosts by instance id: every host needs one (UsageError, exit 2)."""
    if lb.kind != "none" and (missing := [n for n, h in hosts.items() if not h.instance_id]):
        raise UsageError(f"patching.lb is {lb.kind} but host(s) {', '.join(missing)} have no instance_id; set"
                         " hosts[].instance_id so they can be drained (or patching.lb: none)")


def ensure_capacity(ctx: RunContext, hosts: dict[str, Any], lb: Any, batch: list[str], *,
                    where: str = "patch.status lists them") -> None:
    """Right before a batch (facts go stale): enough hosts keep serving while it is drained.
    ``where``: how the on-call engineer finds the hosts that are out."""
    healthy = healthy_in_service(ctx, hosts, lb)
    floor = min_healthy(ctx.settings)
    left = len(healthy - set(batch))
    if left < floor:
        raise StepFailed(f"capacity: only {len(healthy)} hosts are healthy in service; draining {', '.join(batch)}"
                         f" would leave {left}, below patching.min_healthy={floor}. Bring failed hosts back"
                         f" ({where}), then resume this run")


def run_hosts(ctx: RunContext, state: RolloutState, names: list[str], label: str,
              machine: Callable[..., Any] | None = None) -> None:
    """Drive ``names`` in parallel through ``machine`` (a HostRollout class given its cfg;
    default HostPatch); each host ends done, up to date or failed (never raises)."""
    from aep_ops.executors.fleet import map_bounded

    lb, hosts = _load_balancer(ctx), state.hosts()
    machine = machine or partial(HostPatch, cfg=PatchConfig.from_settings(ctx.settings))
    ctx.progress(f"{label}: {', '.join(names)}")
    state.on_change = ctx.note  # every host transition also goes to the journal (runs.show)

    def one(name: str) -> str:
        host = hosts[name]
        return machine(host, state=state, lb=lb, connect=connector(ctx, host),
                       audit=lambda h, action, result, **args: _audit(ctx, h, action, result, **args),
                       progress=ctx.progress).run()

    # The whole batch at once, no overall deadline: each transition has its own.
    for name, answer in zip(names, map_bounded(one, names, parallel=max(1, len(names)), timeout=None)):
        if not answer.ok:  # setting up the host failed (e.g. its SSH configuration)
            state.fail(name, "check", str(answer.error))


def _audit(ctx: RunContext, host: Any, action: str, result: str, **args: Any) -> None:
    audit(ctx.state_dir, f"{ctx.runbook_id}:{action}", target=host.name, result=result,
          args={"address": host.target, "instance_id": host.instance_id, **args})


def describe_failed(failed: dict[str, dict[str, Any]]) -> str:
    return "; ".join(f"{n} at {e['failed_step']} ({e.get('error', '')})" for n, e in sorted(failed.items()))


def report(ctx: RunContext, state: RolloutState, step_id: str) -> None:
    """What the front door shows and the journal keeps, also when the step fails."""
    summary = state.summary()
    ctx.summary["hosts"] = summary
    ctx.summary["failed"] = {n: f"{e['failed_step']}: {e.get('error', '')}" for n, e in state.failed().items()}
    ctx.summary["state_file"] = str(state.path)
    ctx.outputs[step_id] = {"hosts": summary, "failed": ctx.summary["failed"]}


@runbook("patch.rolling", steps=[PlanBatches, RunCanary, RunBatches, VerifyFleet], bounds={"canary": (0, 1000)},
         summary="Rolling OS patching: canary, then batches; drain, upgrade, reboot, health gate, return",
         help={"role": "only hosts of this role",
               "batch": "hosts patched at once: N, or P% of all hosts of the rollout (default 1)",
               "canary": "hosts patched first, alone; any failure stops the rollout (default 1)",
               "max_failed": "failed hosts tolerated before the rollout halts: N, or P% of all hosts of the rollout"
                             " (default 0)",
               "hosts": "comma-separated host names or [user@]address[:port], instead of the inventory",
               "identity": "SSH private key (default ssh.identity)",
               "known_hosts": "known_hosts file (default ssh.known_hosts)"})
def rolling(ctx: RunContext, *, role: str | None = None, batch: str = "1", canary: int = 1, max_failed: str = "0",
            hosts: str | None = None, identity: str | None = None, known_hosts: str | None = None) -> None:
    """Validate the flags before anything is touched; the steps do the work. ``hosts``/``role``
    None: the flag was not given; given but blank is refused. The SSH identity and known_hosts
    are checked here too, so a bad path is exit 2 before the journal, the lock or any host."""
    from aep_ops.fleet.inventory import hosts_flag, role_flag
    from aep_ops.fleet.sshsetup import ssh_file_flags, ssh_files

    parse_size(batch, "--batch", zero_ok=False)
    parse_size(max_failed, "--max-failed", zero_ok=True)
    if int(canary) < 0:
        raise UsageError(f"--canary {canary}: must be 0 or more hosts")
    if not ctx.options.resume:  # a resumed run's parameters are its journaled ones
        hosts_flag(hosts)
        role_flag(role)
        ssh_file_flags(identity, known_hosts)
    ssh_files(ctx.settings, identity=identity or None, known_hosts=known_hosts or None)
    ctx.params.update(role=role, hosts=hosts, canary=int(canary))
