"""Run one shell command on many EC2 instances through SSM Run Command.

For fleets beyond SSH reach (no bastion, no inbound port 22). AWS does the fan-out with
``MaxConcurrency``/``MaxErrors``; we poll ``get_command_invocation`` per instance (not
``list_command_invocations``: one call per instance is cheaper to reason about, and it is
what moto implements) until every invocation is final or the global deadline passes. The
answer is the same FleetResult as the SSH fan-out, so callers do not care which ran.

SSM truncates StandardOutputContent at 24,000 characters (and stderr at 8,000); whole
output needs an S3 bucket, which this backend does not configure.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from aep_ops.base.errors import UsageError
from aep_ops.executors.base import CommandResult, FleetResult, HostOutcome

DOCUMENT = "AWS-RunShellScript"
BATCH = 50  # send_command accepts at most 50 instance ids per call
POLL_START, POLL_MAX = 0.5, 5.0
DELIVERY_TIMEOUT = 30  # TimeoutSeconds minimum: how long SSM may wait for an agent to pick it up

_PENDING = {"Pending", "InProgress", "Delayed", "Cancelling"}
# Final statuses other than Success/Failed: the command did not run to an exit status.
_NOT_RUN = {
    "Cancelled": "the command was cancelled before it finished",
    "Undeliverable": "the SSM agent could not be reached (instance stopped, not managed, or no agent)",
    "Terminated": "the instance was terminated while the command ran",
    "InvalidPlatform": "the document does not run on this instance's platform",
    "AccessDenied": "the instance's IAM role may not run this command",
    "DeliveryTimedOut": "the SSM agent did not pick the command up in time (instance offline?)",
}


def run_via_ssm(ssm_client: Any, instance_ids: Sequence[str], command: str, *, max_concurrency: str = "10",
                max_errors: str = "1", timeout: float = 600, document: str = DOCUMENT,
                poll_interval: float = POLL_START, sleep: Any = time.sleep) -> FleetResult:
    """Send ``command`` (a shell script line) to every instance and wait for final statuses.

    ``timeout`` is the command's execution timeout on each instance; the whole call returns
    within about ``timeout + DELIVERY_TIMEOUT`` seconds whatever SSM does. Outcomes keep the
    order of ``instance_ids``: ok (Success), failed (Failed: ran, non-zero exit), unreachable
    (everything else, with the reason)."""
    from aep_ops.aws.clients import aws_errors

    ids = list(dict.fromkeys(instance_ids))
    if not ids:
        raise UsageError("no instance ids to send the command to")
    if not command.strip():
        raise UsageError("empty command")
    execution = max(1, int(timeout))
    deadline = time.monotonic() + execution + DELIVERY_TIMEOUT
    started = {}
    command_ids: dict[str, str] = {}
    for i in range(0, len(ids), BATCH):
        batch = ids[i:i + BATCH]
        with aws_errors(ssm_client, f"sending `{_short(command)}` to {len(batch)} instance(s) via SSM"):
            response = ssm_client.send_command(
                InstanceIds=batch, DocumentName=document, Comment="aep-ops fleet.run",
                Parameters={"commands": [command], "executionTimeout": [str(execution)]},
                TimeoutSeconds=max(DELIVERY_TIMEOUT, execution), MaxConcurrency=str(max_concurrency),
                MaxErrors=str(max_errors),
            )
        for instance in batch:
            command_ids[instance] = response["Command"]["CommandId"]
            started[instance] = time.monotonic()
    final: dict[str, HostOutcome] = {}
    last: dict[str, str] = {}
    interval = poll_interval
    while True:
        for instance in ids:
            if instance in final:
                continue
            invocation = _invocation(ssm_client, command_ids[instance], instance)
            if invocation is None:  # not registered yet: SSM is eventually consistent
                continue
            last[instance] = invocation.get("Status") or "Pending"
            outcome = _outcome(instance, command, invocation, time.monotonic() - started[instance])
            if outcome is not None:
                final[instance] = outcome
        if len(final) == len(ids) or time.monotonic() >= deadline:
            break
        sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 2, POLL_MAX)
    late = [i for i in ids if i not in final]
    if late:
        _cancel(ssm_client, command_ids, late)
    for instance in late:
        final[instance] = HostOutcome(instance, error=(
            f"{instance}: no final SSM status within {execution + DELIVERY_TIMEOUT}s (last: "
            f"{last.get(instance, 'not registered')}); the command was cancelled"))
    return FleetResult(tuple(final[i] for i in ids))


def _invocation(ssm_client: Any, command_id: str, instance: str) -> dict | None:
    from botocore.exceptions import ClientError

    from aep_ops.aws.clients import error_code, translate

    try:
        return ssm_client.get_command_invocation(CommandId=command_id, InstanceId=instance)
    except ClientError as exc:
        if error_code(exc) == "InvocationDoesNotExist":
            return None
        raise translate(exc, doing=f"reading the SSM command status on {instance}", resource=instance,
                        client=ssm_client) from exc


def _outcome(instance: str, command: str, inv: dict, duration: float) -> HostOutcome | None:
    """A final invocation -> HostOutcome; None while it is still pending."""
    status = inv.get("Status") or "Pending"
    details = inv.get("StatusDetails") or status
    if status in _PENDING:
        return None
    if status in ("Success", "Failed"):
        code = inv.get("ResponseCode")
        exit_status = int(code) if isinstance(code, int) and code >= 0 else (0 if status == "Success" else 1)
        if status == "Failed" and exit_status == 0:
            exit_status = 1  # a failed plugin with no exit code is still a failure
        if details in _NOT_RUN:  # e.g. Failed/AccessDenied: it never ran
            return HostOutcome(instance, error=f"{instance}: {details}: {_NOT_RUN[details]}")
        return HostOutcome(instance, result=CommandResult(
            target=instance, argv=(command,), exit_status=exit_status,
            stdout=inv.get("StandardOutputContent") or "", stderr=inv.get("StandardErrorContent") or "",
            duration=duration))
    if status == "TimedOut":
        if details == "DeliveryTimedOut":
            return HostOutcome(instance, error=f"{instance}: DeliveryTimedOut: {_NOT_RUN['DeliveryTimedOut']}")
        return HostOutcome(instance, error=f"{instance}: the command did not finish within its execution timeout "
                                           f"(SSM {details}); it was stopped on the instance")
    reason = _NOT_RUN.get(status) or _NOT_RUN.get(details) or "the command did not run"
    return HostOutcome(instance, error=f"{instance}: {status}" + (f" ({details})" if details != status else "")
                       + f": {reason}")


def _cancel(ssm_client: Any, command_ids: dict[str, str], instances: list[str]) -> None:
    """Best effort: stop what we will no longer wait for (a failure here changes no result)."""
    by_command: dict[str, list[str]] = {}
    for instance in instances:
        by_command.setdefault(command_ids[instance], []).append(instance)
    for command_id, ids in by_command.items():
        try:
            ssm_client.cancel_command(CommandId=command_id, InstanceIds=ids)
        except Exception:  # noqa: BLE001 - the outcome is already "unreachable"; nothing to add
            pass


def _short(command: str, limit: int = 60) -> str:
    command = " ".join(command.split())
    return command if len(command) <= limit else command[: limit - 3] + "..."
