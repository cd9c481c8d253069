"""Backups of the local AEP source with pgBackRest: set up, take, check archiving, verify.

repo1 is local disk (fast restores); repo2, when ``backup.s3.bucket`` is configured, is the
off-site copy on S3, encrypted by pgBackRest with AES-256 (``backup.s3.cipher_pass``).
WAL is pushed to every configured repo by archive_command; a backup goes to one repo per
run (``backup.run --repo 2`` for the off-site one). Retention is per repo
(``backup.retention_full``, ``backup.s3.retention_full``) and applied by pgBackRest after
each backup. On backend ``rds`` these steps report "managed by Amazon RDS".
"""

from __future__ import annotations

from typing import Any

from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan
from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed
from aep_ops.db.backends import backend_class
from aep_ops.db.runbooks import EnsureStanza
from aep_ops.db.source import SourceStep, backup_outputs, require_running, source
from aep_ops.base.log import get_logger

log = get_logger(__name__)


def configured_repos(ctx: RunContext) -> list[int]:
    """repo1 always; repo2 when an S3 bucket is configured for this environment."""
    s3 = ((ctx.env.get("backup") or {}).get("s3") or {})
    return [1, 2] if s3.get("bucket") else [1]


class RunArchiveCheck(SourceStep):
    """Proves archive_command works now: one forced segment, seen archived and in every repo."""

    id = "run_archive_check"
    title = "Switch WAL and confirm the segment reaches the archive"
    timeout = 300

    def check_source(self, ctx, db):
        repos = ", ".join(f"repo{r}" for r in configured_repos(ctx))
        return Plan.change(f"switch WAL on the source and confirm it arrives in {repos}")

    def apply(self, ctx, plan):
        from aep_ops.backup.repo import archive_roundtrip, segment_in_repo

        db = source(ctx)
        try:
            trip = archive_roundtrip(db, timeout=120)
        except VerificationFailed as exc:
            raise StepFailed(str(exc)) from exc
        missing = [r for r in configured_repos(ctx) if not segment_in_repo(db, r, trip.wal)]
        if missing:
            raise StepFailed(f"WAL {trip.wal} was archived but is not listed in repo{missing[0]};"
                             f" see {db.backrest.config.log_path}")
        return {"wal": trip.wal, "seconds": round(trip.seconds, 2), "repos": configured_repos(ctx)}


class RunBackup(SourceStep):
    """One backup of the requested type to one repo; pgBackRest then expires per retention."""

    id = "run_backup"
    title = "Take a pgBackRest backup"
    idempotent = False
    timeout = 6 * 3600

    def check_source(self, ctx, db):
        return Plan.change(f"pgbackrest backup --type={ctx.params['type']} --repo={ctx.params['repo']}")

    def apply(self, ctx, plan):
        import time

        from aep_ops.pg.backrest_progress import backup_watch

        db = source(ctx)
        ctx.progress(plan.summary)
        started = time.monotonic()
        with backup_watch(db.backrest, ctx.params["type"], int(ctx.params["repo"]), ctx.progress):  # bytes, rate, ETA
            backup = db.backrest.backup(ctx.params["type"], repo=int(ctx.params["repo"]), progress=ctx.progress)
        outputs = {**backup_outputs(backup), "seconds": round(time.monotonic() - started, 2)}
        log.info("backup.run.done", label=backup.label, repo=outputs["repo"], seconds=outputs["seconds"])
        return outputs

    def verify(self, ctx, outputs):
        if outputs["label"] not in {b.label for b in source(ctx).backrest.info()}:
            raise VerificationFailed(f"backup {outputs['label']} is not listed by `pgbackrest info`")

    def recover(self, ctx, prior):
        """The killed attempt's pgBackRest backup may still be running, or may have finished:
        wait for it and adopt a backup of this type that started after that attempt did.
        None (no backup from it) means taking one now is safe: a second backup is only wasted work."""
        from datetime import datetime, timedelta

        backrest = source(ctx).backrest
        # Wait before looking: a backup finishing between this look and apply's would be taken twice.
        if backrest.backup_running():
            ctx.progress("the interrupted attempt's pgBackRest backup is still running; waiting for it to finish")
            backrest.wait_for_running_backup(timeout=self.timeout)
        since = datetime.fromisoformat(prior.started_at) - timedelta(seconds=1)  # pgBackRest: whole seconds
        made = [b for b in backrest.info() if b.type == ctx.params["type"] and not b.error and b.start >= since
                and (b.repo_key or 1) == int(ctx.params["repo"])]
        return {**backup_outputs(made[-1]), "adopted": True} if made else None


class ArchiverStatus(SourceStep):
    """pg_stat_archiver: failures newer than the last success, and segments waiting too long."""

    id = "archiver_status"
    title = "Archiver reports no failure and no backlog older than the RPO"
    soft = True
    needs_running_source = False  # a source that is down is a finding here, not a plan

    def check_source(self, ctx, db):
        from aep_ops.backup.repo import archiver_details, failure_text
        from aep_ops.pg import facts
        from aep_ops.base.textfmt import duration

        require_running(db, ctx)
        with db.cluster.connect(connect_timeout=5) as conn:
            status = facts.archiver_status(conn)
            ready = facts.archive_ready_count(conn)
        details = {**archiver_details(status), "ready_segments": ready}
        if status.failing:
            raise VerificationFailed(failure_text(status, db), details=details)
        rpo = int((ctx.env.get("objectives") or {}).get("rpo_seconds") or 900)
        lag = details["lag_seconds"]
        if ready and (lag is None or lag > rpo):
            raise VerificationFailed(f"{ready} WAL segment(s) wait to be archived and the last success was"
                                     f" {'never' if lag is None else f'{duration(lag)} ago'} (RPO {duration(rpo)});"
                                     f" check archive_command and {db.cluster.logfile}", details=details)
        return Plan.unchanged(f"{status.failed_count} failure(s) ever, none since the last success;"
                              f" last archived {status.last_archived_wal or 'none'}"
                              f" ({'never' if lag is None else f'{duration(lag)} ago'}), {ready} waiting", **details)


class ArchiveRoundtrip(SourceStep):
    """End to end: a forced segment must be archived within the deadline (fails fast on errors)."""

    id = "archive_roundtrip"
    title = "A forced WAL switch is archived within the deadline"
    soft = True
    timeout = 3600
    needs_running_source = False  # a source that is down is a finding here, not a plan

    def check_source(self, ctx, db):
        require_running(db, ctx)
        repos = ", ".join(f"repo{r}" for r in configured_repos(ctx))
        return Plan.change(f"ask {repos} whether they answer, then switch WAL and wait up to"
                           f" {ctx.params['timeout']}s until it is archived")

    def apply(self, ctx, plan):
        from aep_ops.backup.repo import archive_roundtrip, archiver_details

        db = source(ctx)
        failing = {}
        for repo in configured_repos(ctx):  # one at a time: say which repository fails
            ctx.progress(f"asking {db.backrest.describe_repo(repo)}")
            problem = db.backrest.repo_problem(repo)
            if problem:
                failing[repo] = problem
        if failing:
            healthy = [f"repo{r}" for r in configured_repos(ctx) if r not in failing]
            raise VerificationFailed("; ".join(f"{db.backrest.describe_repo(r)} does not answer: {why}"
                                               for r, why in failing.items())
                                     + (f"; {', '.join(healthy)} answer(s) and still receive WAL"
                                        " (asynchronous archiving)" if healthy else "")
                                     + "; fix the endpoint or its credentials, then run backup.check again",
                                     details={"failing_repos": sorted(failing)})
        trip = archive_roundtrip(db, timeout=float(ctx.params["timeout"]))
        return {"wal": trip.wal, "seconds": round(trip.seconds, 2), **archiver_details(trip.status)}


class RepositoryIntegrity(SourceStep):
    """``pgbackrest verify`` per repo: checksums and sizes of every backup file and WAL segment."""

    id = "repository_integrity"
    title = "pgBackRest verify finds no damaged backup or WAL file"
    soft = True
    timeout = 6 * 3600

    needs_running_source = False  # the repository is checked, not the server

    def check_source(self, ctx, db):
        found, damaged = {}, []
        for repo in _repos(ctx):
            try:
                db.backrest.verify(repo=repo)
                found[f"repo{repo}"] = "ok"
            except (VerificationFailed, StepFailed) as exc:
                found[f"repo{repo}"] = str(exc)
                damaged.append(f"repo{repo}: {exc}")
        if damaged:
            raise VerificationFailed("; ".join(damaged), details={"repos": found})
        return Plan.unchanged(f"{', '.join(found)}: every backup and WAL file valid", repos=found)


class WalContinuity(SourceStep):
    """No missing segment from the oldest backup's start to the newest archived segment."""

    id = "wal_continuity"
    title = "WAL is continuous from the oldest backup to the newest archived segment"
    soft = True
    timeout = 3600

    needs_running_source = False  # the repository is checked, not the server

    def check_source(self, ctx, db):
        from aep_ops.backup.repo import archived_segments, wal_gaps

        backups = db.backrest.info()
        seg_size = _segment_size(db)
        report, problems = {}, []
        for repo in _repos(ctx):
            mine = [b for b in backups if (b.repo_key or 1) == repo and b.wal_start]
            if not mine:
                problems.append(f"repo{repo}: no backup, nothing to restore from (run `inv backup.run --repo {repo}`)")
                continue
            start, end = min(b.wal_start for b in mine), max(b.wal_stop or b.wal_start for b in mine)
            segments = set().union(*archived_segments(db, repo).values())
            newest = max([*segments, end], key=lambda s: s[8:])
            gaps = wal_gaps(segments, start, end, seg_size)
            report[f"repo{repo}"] = {"from": start, "to": newest, "gaps": gaps}
            if gaps:
                problems.append(f"repo{repo}: WAL gap(s) between {start} and {newest}: " + ", ".join(
                    f"{g['from']}" + (f"..{g['to']}" if g["segments"] > 1 else "") + f" ({g['segments']} missing)"
                    for g in gaps) + "; a restore cannot replay past the first gap: take a new full backup")
        if problems:
            raise VerificationFailed("; ".join(problems), details={"repos": report})
        return Plan.unchanged(", ".join(f"{r}: {v['from']}..{v['to']} continuous" for r, v in report.items()),
                              repos=report)


def _repos(ctx: RunContext) -> list[int]:
    wanted = int(ctx.params.get("repo") or 0)
    return [wanted] if wanted else configured_repos(ctx)


def _segment_size(db: Any) -> int:
    from aep_ops.backup.repo import DEFAULT_SEGMENT_SIZE

    if db.cluster.postmaster_pid() is None:
        return DEFAULT_SEGMENT_SIZE
    from aep_ops.pg import facts

    with db.cluster.connect(connect_timeout=5) as conn:
        return facts.wal_segment_size(conn)


def _check_repo(ctx: RunContext, repo: int, *, allow_all: bool) -> None:
    repos = configured_repos(ctx)
    if (repo == 0 and allow_all) or repo in repos:
        return
    hint = " (repo2 needs environments.{}.backup.s3.bucket)".format(ctx.env_name) if repo == 2 else ""
    raise UsageError(f"--repo {repo}: configured repos are {', '.join(map(str, repos))}{hint}")


@runbook("backup.setup", steps=[EnsureStanza, RunArchiveCheck],
         summary="Set up the pgBackRest stanza and prove that WAL archiving reaches it")
def setup(ctx: RunContext) -> None:
    backend_class(ctx.settings).check_usable(ctx.settings)


@runbook("backup.run", steps=[RunBackup], summary="Take a pgBackRest backup (full, diff or incr) to one repo",
         help={"type": "full, diff or incr (default full)", "repo": "1 = local disk (default), 2 = S3 off-site"},
         bounds={"repo": (1, 2)})
def run(ctx: RunContext, *, type: str = "full", repo: int = 1) -> None:
    if type not in ("full", "diff", "incr"):
        raise UsageError(f"--type {type!r}: use full, diff or incr")
    _check_repo(ctx, int(repo), allow_all=False)
    backend_class(ctx.settings).check_usable(ctx.settings)


@runbook("backup.check", steps=[ArchiverStatus, ArchiveRoundtrip], mutating=False,
         summary="Check that WAL archiving works end to end (exit 5 when it does not)",
         help={"timeout": "seconds to wait for the forced WAL segment to be archived (default 60)"},
         bounds={"timeout": (1, 3600)})
def check(ctx: RunContext, *, timeout: int = 60) -> None:
    """Read-only; the timeout's range is declared in ``bounds``."""


@runbook("backup.verify", steps=[RepositoryIntegrity, WalContinuity], mutating=False,
         summary="Verify the backup repositories: file integrity and WAL continuity (exit 5 on damage)",
         help={"repo": "only this repo (default: every configured repo)"}, bounds={"repo": (0, 2)})
def verify(ctx: RunContext, *, repo: int = 0) -> None:
    _check_repo(ctx, int(repo), allow_all=True)
