"""The steps of logs.retention: the bucket's lifecycle rules (merged by ID, read back), object
lock for audit logs where configured, and the shipped files kept on the hosts pruned."""

from __future__ import annotations

import posixpath

from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import StepFailed, VerificationFailed
from aep_ops.logs.s3put import s3_for

# Shipped files older than $1 minutes in each shipped/ directory of the globs after it: listed
# (and deleted with $2 = delete). Only files that logs.ship moved there, after S3 verified them.
PRUNE = ('m=$1; act=$2; shift 2; IFS=""; for p; do for d in $p/shipped; do [ -d "$d" ] || continue;'
         ' if [ "$act" = delete ]; then find "$d" -maxdepth 1 -type f -mmin +"$m" -print -delete;'
         ' else find "$d" -maxdepth 1 -type f -mmin +"$m" -print; fi; done; done')


def _values(ctx):
    from aep_ops.logs.settings import logs_settings

    return logs_settings(ctx.settings)


def _rules(ctx, s3):
    from aep_ops.logs import lifecycle

    bucket = ctx.params["bucket"]
    versioned = lifecycle.is_versioned(s3, bucket)
    return lifecycle.wanted_rules(ctx.env_name, _values(ctx).get("prefix") or "", _values(ctx), versioned=versioned)


class BucketLifecycle(Step):
    id = "bucket_lifecycle"
    title = "Merge aep-ops's lifecycle rules into the bucket's (30 days dev, 90 prod, audit longer)"
    requires_approval = True

    def check(self, ctx):
        from aep_ops.aws import aws_errors
        from aep_ops.logs import lifecycle

        s3, bucket = s3_for(ctx), ctx.params["bucket"]
        with aws_errors(s3, f"reading the lifecycle rules of s3://{bucket}", resource=bucket):
            ours = _rules(ctx, s3)
            stale = lifecycle.missing(lifecycle.current_rules(s3, bucket), ours)
        values = _values(ctx)
        days = f"app {values['retention_days']} days, audit {values['audit_retention_days']} days"
        if not stale:
            return Plan.unchanged(f"s3://{bucket} has aep-ops's rules ({days})")
        return Plan.change(f"write {', '.join(stale)} into s3://{bucket} ({days}; other rules kept)", rules=stale)

    def apply(self, ctx, plan):
        from aep_ops.aws import aws_errors
        from aep_ops.logs import lifecycle

        s3, bucket = s3_for(ctx), ctx.params["bucket"]
        with aws_errors(s3, f"writing the lifecycle rules of s3://{bucket}", resource=bucket):
            written = lifecycle.ensure(s3, bucket, _rules(ctx, s3))
        return {"written": written}

    def verify(self, ctx, outputs):
        from aep_ops.aws import aws_errors
        from aep_ops.logs import lifecycle

        s3, bucket = s3_for(ctx), ctx.params["bucket"]
        with aws_errors(s3, f"reading back the lifecycle rules of s3://{bucket}", resource=bucket):
            current = lifecycle.current_rules(s3, bucket)
            stale = lifecycle.missing(current, _rules(ctx, s3))
        if stale:
            raise VerificationFailed(f"s3://{bucket} does not hold {', '.join(stale)} as written")
        ctx.summary["lifecycle_rules"] = current


class AuditObjectLock(Step):
    id = "audit_object_lock"
    title = "Check that the bucket can lock audit logs (where configured)"

    def check(self, ctx):
        from aep_ops.aws import aws_errors

        from aep_ops.logs.settings import object_lock

        lock = object_lock(_values(ctx))
        if not lock:
            return Plan.unchanged("no object lock configured for audit logs (logs.audit_object_lock)")
        s3, bucket = s3_for(ctx), ctx.params["bucket"]
        with aws_errors(s3, f"reading the object lock configuration of s3://{bucket}", resource=bucket):
            try:
                state = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
            except Exception as exc:  # ObjectLockConfigurationNotFoundError: the bucket has none
                if "ObjectLockConfigurationNotFound" not in str(exc):
                    raise
                state = {}
        if state.get("ObjectLockEnabled") != "Enabled":
            raise StepFailed(f"s3://{bucket} has no object lock, so audit logs cannot be locked for {lock['days']}"
                             " days: enable it on the bucket (versioning on, then put-object-lock-configuration),"
                             " or remove logs.audit_object_lock")
        return Plan.unchanged(f"s3://{bucket} has object lock: audit logs are shipped locked in {lock['mode']} mode"
                              f" for {lock['days']} days")


class ShippedFilesOnHosts(Step):
    id = "shipped_files_on_hosts"
    title = "Delete shipped files older than local_retention_days from the hosts"
    requires_approval = True

    def check(self, ctx):
        found = _prune(ctx, delete=False)
        days = _values(ctx)["local_retention_days"]
        if not found:
            return Plan.unchanged(f"no shipped file older than {days} days on the hosts")
        return Plan.change(f"delete {len(found)} shipped file(s) older than {days} days")

    def apply(self, ctx, plan):
        deleted = _prune(ctx, delete=True)
        ctx.summary["deleted_local"] = deleted
        return {"deleted": len(deleted)}


def _prune(ctx, *, delete: bool) -> list[str]:
    from aep_ops.fleet.inventory import parallel_for
    from aep_ops.logs.hostwork import on_each_host

    minutes = int(_values(ctx)["local_retention_days"]) * 1440

    def prune(executor, host, host_sources):
        dirs = sorted({posixpath.dirname(p) for s in host_sources for p in s.paths_on(host.name)})
        result = executor.run(["sh", "-c", PRUNE, "sh", str(minutes), "delete" if delete else "list", *dirs],
                              timeout=600)
        if not result.ok:
            raise StepFailed(f"{host.name}: {result.stderr_tail(2) or result.exit_status}")
        return [f"{host.name}:{line}" for line in result.stdout.splitlines() if line.strip()]

    answers = on_each_host(ctx.settings, ctx.params["sources"], prune, parallel=parallel_for(ctx.settings),
                           timeout=900)
    failed = [f"{h.name}: {why}" for h, _, why in answers if why]
    if failed:
        raise StepFailed("cannot prune shipped files on " + "; ".join(failed))
    return [line for _, value, _ in answers for line in value]
