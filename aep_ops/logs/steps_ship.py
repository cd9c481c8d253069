"""The steps of logs.ship: first the bucket rule and the sweep that clear this tool's abandoned
multipart uploads, then every ready rotated file of every host shipped exactly once."""

from __future__ import annotations

from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import StepFailed


def _values(ctx):
    from aep_ops.logs.settings import logs_settings

    return logs_settings(ctx.settings)


def _host_prefixes(ctx) -> list[str]:
    from aep_ops.logs.keys import host_prefix
    from aep_ops.logs.targets import by_host

    prefix = _values(ctx).get("prefix") or ""
    return [host_prefix(prefix, ctx.env_name, s.key_role, host.name)
            for host, host_sources in by_host(ctx.settings, ctx.params["sources"]) for s in host_sources]


class AbandonedUploads(Step):
    id = "abandoned_uploads"
    title = "Abort this tool's abandoned multipart uploads (and keep the bucket rule that does it)"
    requires_approval = True

    def check(self, ctx):
        return Plan.change(f"abort incomplete uploads under {len(set(_host_prefixes(ctx)))} host prefix(es) of"
                           f" s3://{ctx.params['bucket']}")

    def apply(self, ctx, plan):
        from aep_ops.aws import aws_errors
        from aep_ops.logs import lifecycle, s3put

        s3 = s3put.s3_for(ctx)
        bucket = ctx.params["bucket"]
        with aws_errors(s3, f"keeping the abort-incomplete-uploads rule of s3://{bucket}", resource=bucket):
            rule = lifecycle.ensure(s3, bucket, [lifecycle.abort_rule(ctx.env_name, _values(ctx).get("prefix") or "")])
        with aws_errors(s3, f"aborting abandoned uploads in s3://{bucket}", resource=bucket):
            aborted = s3put.abort_abandoned(s3, bucket, sorted(set(_host_prefixes(ctx))), ctx.params["started"])
        if aborted:
            ctx.progress(f"aborted {len(aborted)} abandoned multipart upload(s): {', '.join(aborted[:5])}")
        ctx.summary["aborted_uploads"] = aborted
        return {"aborted": aborted, "rule_written": rule}


class ShipFiles(Step):
    id = "ship_files"
    title = "Ship every rotated file to S3, verify it there, then mark it shipped"
    requires_approval = True

    def check(self, ctx):
        jobs, waiting, problems = _jobs(ctx)
        _close(jobs)
        note = f" ({waiting} more are not final yet: compression pending)" if waiting else ""
        if problems and not jobs:
            raise StepFailed("cannot list the rotated files on " + "; ".join(problems))
        if not jobs:
            return Plan.unchanged("no rotated file waits to be shipped" + note, waiting_compression=waiting)
        size = sum(j.file.size for j in jobs)
        unreadable = f"; cannot list the files on {len(problems)} host(s): " + "; ".join(problems) if problems else ""
        return Plan.change(f"ship {len(jobs)} file(s), {size / 1e6:.1f} MB{note}{unreadable}")

    def apply(self, ctx, plan):
        from aep_ops.executors.fleet import map_bounded
        from aep_ops.logs import s3put
        from aep_ops.logs.manifest import Manifest, manifest_path
        from aep_ops.logs.settings import object_lock
        from aep_ops.logs.ship import ship_one

        jobs, waiting, problems = _jobs(ctx)
        values = _values(ctx)
        transfer = s3put.open_transfer(s3put.s3_for(ctx), ctx.params["bucket"], values,
                                       max_bandwidth=ctx.params["max_bandwidth"])
        manifest = Manifest(manifest_path(ctx.settings))
        done = [0]

        def one(job):
            entry = ship_one(transfer, job, manifest, object_lock(values))
            done[0] += 1
            ctx.progress(f"[{done[0]}/{len(jobs)}] {entry['outcome']}: {job.host.name}:{job.file.path}"
                         f" -> s3://{transfer.bucket}/{job.key}")
            return entry

        try:
            answers = map_bounded(one, jobs, parallel=int(values["concurrency"]), timeout=None)
        finally:
            transfer.close()
            _close(jobs)
        shipped = [a.value for a in answers if a.ok]
        failed = [a.why() for a in answers if not a.ok]
        ctx.summary.update(shipped=shipped, failed=failed, waiting_compression=waiting, manifest=str(manifest.path))
        if problems or failed:
            raise StepFailed(f"{len(failed)} of {len(jobs)} file(s) not shipped (they stay on their hosts): "
                             + " | ".join(problems + failed))
        return {"shipped": len(shipped), "bytes": sum(e["size"] for e in shipped),
                "lines": sum(e["lines"] for e in shipped)}


def _jobs(ctx):
    """(jobs, files waiting for compression, "host: why" per host that could not be listed)."""
    from aep_ops.executors.fleet import map_bounded
    from aep_ops.fleet.inventory import parallel_for
    from aep_ops.logs.hostfiles import HostFiles
    from aep_ops.logs.ship import find_jobs
    from aep_ops.logs.targets import by_host, connect

    prefix = _values(ctx).get("prefix") or ""
    pairs = by_host(ctx.settings, ctx.params["sources"])

    def listing(pair):
        host, host_sources = pair
        executor = connect(ctx.settings, host)
        try:
            found = find_jobs(ctx.env_name, prefix, host, HostFiles(executor, local=host.local), host_sources,
                              ctx.params["paths"])
        except BaseException:
            executor.close()
            raise
        if not found[0]:
            executor.close()  # nothing to ship from this host: no connection kept open for it
        return found

    answers = map_bounded(listing, pairs, parallel=parallel_for(ctx.settings), timeout=600)
    jobs = [job for a in answers if a.ok for job in a.value[0]]
    waiting = sum(a.value[1] for a in answers if a.ok)
    return jobs, waiting, [f"{host.name}: {a.why()}" for (host, _), a in zip(pairs, answers) if not a.ok]


def _close(jobs) -> None:
    for executor in {id(j.files.executor): j.files.executor for j in jobs}.values():
        executor.close()
