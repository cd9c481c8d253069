"""The steps of ``db.migrate``: find and lint, preflight, backup, restore point, (rehearse),
migrate, verify. See runbooks/db.migrate.md for what an on-call engineer reads.

Every check is read-only and recomputes what is pending from the database (the ledger or the
tool's dry run), so a second run applies nothing and a resumed run applies only the rest.
``--plan`` is a journaled run whose steps only look: each says what it would do.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from aep_ops.base.errors import StepFailed, UsageError, VerificationFailed, refuse_blank
from aep_ops.base.log import get_logger
from aep_ops.db import migrate_sql
from aep_ops.db.migrate_config import MigrateConfig, check_dirs, migrate_config
from aep_ops.db.migrate_target import conn_params, connect, tag
from aep_ops.engine.context import RunContext
from aep_ops.engine.step import Plan, Step

log = get_logger(__name__)
NOTHING = "nothing to migrate"


def validate_input(ctx: RunContext, *, plan: bool, down: str | None, rehearse: bool) -> None:
    """Refusals (exit 2, one line) before anything is touched."""
    from aep_ops.db.backends import backend_class

    refuse_blank("--down", down, "give the name of the applied migration to revert (it and every later one)")
    cfg = migrate_config(ctx.settings)
    check_dirs(cfg, down=down is not None)
    backend = backend_class(ctx.settings)
    backend.check_usable(ctx.settings)
    if down is not None and rehearse:
        raise UsageError("--rehearse rehearses the up migration; revert with --down without it")
    if rehearse and not backend.self_hosted:
        raise UsageError(f"--rehearse is built for the local backend; {ctx.env_name} uses"
                         f" '{ctx.env.get('backend')}' (rehearse on a `pitr.restore` copy by hand)")
    if down is not None and cfg.sql_dir is not None and not (cfg.sql_dir / down).is_file():
        raise UsageError(f"--down {down[:80]!r}: no such migration in {cfg.sql_dir}")


def pending(ctx: RunContext, cfg: MigrateConfig, params: dict[str, Any], conn: Any) -> list[migrate_sql.Migration]:
    """What a run would apply now (or revert, with --down), read from the database."""
    down = ctx.params.get("down")
    if cfg.sql_dir is not None:
        if down is None:
            found, changed = migrate_sql.pending_files(conn, cfg)
            if changed:
                ctx.summary["changed_after_apply"] = changed
            return found
        order = migrate_sql.applied_order(conn, cfg.ledger_table)
        if down not in order:
            return []
        names = list(reversed(order[order.index(down):]))
        missing = [n for n in names if not (cfg.down_dir / n).is_file()]
        if missing:
            raise StepFailed(f"no down migration for {', '.join(missing)} in {cfg.down_dir}; write it, or restore"
                             " to the recorded restore point with `inv pitr.restore`")
        return [migrate_sql.Migration(n, (cfg.down_dir / n).read_text()) for n in names]
    if down is not None:
        return [migrate_sql.Migration(f"down {down}", "")]
    if not cfg.dry_run_command:
        return [migrate_sql.Migration("(decided by the tool: no migrate.dry_run_command)", "")]
    from aep_ops.db.migrate_run import command_env
    from aep_ops.executors.local import LocalExecutor

    result = LocalExecutor().run(list(cfg.dry_run_command), env=command_env(params, cfg, tag(ctx.run_id, "dry-")),
                                 timeout=300)
    if not result.ok:
        raise StepFailed(f"`{' '.join(cfg.dry_run_command)}` exited {result.exit_status}:"
                         f" {(result.stderr or result.stdout).strip()[-300:]}")
    return migrate_sql.parse_dry_run(result.stdout)


def _nothing(ctx: RunContext) -> bool:
    """Step 1 found nothing to do (then the later steps have nothing to do either)."""
    return not ctx.output("pending_migrations", "pending")


class PendingMigrations(Step):
    id = "pending_migrations"
    title = "Find the pending migrations and lint their SQL"

    def check(self, ctx):
        from aep_ops.db.migrate_lint import as_records, lint

        cfg = migrate_config(ctx.settings)
        params = conn_params(ctx.settings, cfg)
        with connect(params) as conn:
            found = pending(ctx, cfg, params, conn)
        down = ctx.params.get("down") is not None
        findings, squawk_ran = lint([] if down else [m for m in found if m.sql])
        ctx.summary["lint"] = [f.line() for f in findings]
        ctx.summary["squawk"] = "ran" if squawk_ran else "not available (pip install squawk-cli); own rules only"
        if ctx.params.get("plan"):
            ctx.summary["sql"] = "\n\n".join(f"-- {m.name}\n{m.sql.strip()}" for m in found)
        errors = [f for f in findings if f.level == "error"]
        if errors and not (ctx.params.get("plan") or ctx.dry_run):
            raise StepFailed(f"{len(errors)} lint error(s), nothing was changed: "
                             + "; ".join(f.line() for f in errors) + " (see `db.migrate --plan`)")
        verb = "revert" if down else "apply"
        text = (f"{verb} {len(found)}: {', '.join(m.name for m in found)}" if found else NOTHING)
        text += f"; lint: {len(errors)} error(s), {len(findings) - len(errors)} other finding(s)" if findings else ""
        return Plan.unchanged(text, pending=[m.name for m in found], lint=as_records(findings), squawk=squawk_ran,
                              source=cfg.source_text)


class Preflight(Step):
    id = "preflight"
    title = "Preflight: no migration lock held, no long transaction, replicas caught up"

    def check(self, ctx):
        from aep_ops.db import migrate_facts as facts

        if _nothing(ctx):
            return Plan.unchanged(NOTHING)
        cfg = migrate_config(ctx.settings)
        problems = []
        with connect(conn_params(ctx.settings, cfg)) as conn:
            holders = facts.advisory_lock_holders(conn, cfg.migration_lock_id)
            if holders:
                problems.append(f"migration advisory lock {cfg.migration_lock_id} is held by pid"
                                f" {', '.join(map(str, holders))}: another migration runs")
            if cfg.lock_table and facts.lock_table_held(conn, cfg.lock_table):
                problems.append(f"the migration lock table {cfg.lock_table} says a migration runs")
            for s in facts.long_transactions(conn, cfg.long_transaction_seconds):
                problems.append(f"long transaction (> {cfg.long_transaction_seconds} s): {s.describe()}")
            lag = facts.replication_lag(conn)
            for name, seconds in lag.items():
                if seconds > cfg.max_replication_lag_seconds:
                    problems.append(f"replica {name} lags {seconds:.0f} s (> {cfg.max_replication_lag_seconds} s)")
        ctx.summary["preflight"] = problems or ["passed"]
        if problems:
            raise StepFailed("preflight: " + "; ".join(problems) + "; nothing was changed, run again when clear")
        return Plan.unchanged(f"passed (lock free, no transaction over {cfg.long_transaction_seconds} s,"
                              f" {len(lag)} replica(s) within {cfg.max_replication_lag_seconds} s)",
                              replicas=lag)


class EnsureMigrationBackup(Step):
    id = "ensure_recent_backup"
    title = "Ensure a backup recent enough to restore from"
    timeout = 3600

    def check(self, ctx):
        from aep_ops.db.backends import backend_for
        from aep_ops.db.source import backup_outputs, source

        if _nothing(ctx):
            return Plan.unchanged(NOTHING)
        cfg = migrate_config(ctx.settings)
        backend = backend_for(ctx.settings)
        if not backend.self_hosted:
            found = backend.archive_facts()
            if found["problems"]:
                raise StepFailed("backups: " + "; ".join(found["problems"]))
            return Plan.unchanged(f"{backend.managed_by}: restorable to {found['last_archived_at']}",
                                  latest_restorable=str(found["last_archived_at"]))
        backups = [b for b in source(ctx).backrest.info() if (b.repo_key or 1) == 1 and not b.error]
        newest = backups[-1] if backups else None
        age = datetime.now(timezone.utc) - newest.stop if newest else None
        if newest is not None and age <= timedelta(hours=cfg.backup_max_age_hours):
            return Plan.unchanged(f"newest backup {newest.label} ended {int(age.total_seconds())} s ago",
                                  **backup_outputs(newest))
        kind = "full" if not any(b.type == "full" for b in backups) else "diff"
        why = "no backup" if newest is None else f"newest backup is {age.total_seconds() / 3600:.1f} h old"
        if ctx.params.get("plan"):
            return Plan.unchanged(f"--plan: would take a {kind} backup ({why})")
        return Plan.change(f"{why} (> {cfg.backup_max_age_hours} h): take a {kind} backup", type=kind)

    def apply(self, ctx, plan):
        from aep_ops.db.source import backup_outputs, source

        ctx.progress(f"pgbackrest backup --type={plan.details['type']} --repo=1")
        return backup_outputs(source(ctx).backrest.backup(plan.details["type"], repo=1, progress=ctx.progress))


class RecordRestorePoint(Step):
    """Approval is asked here, not only at the migration: a point recorded before a long wait for
    approval would make a rollback to it lose every write made while waiting."""

    id = "record_restore_point"
    title = "Record the restore point (time and LSN) to roll back to"
    requires_approval = True

    def check(self, ctx):
        if _nothing(ctx):
            return Plan.unchanged(NOTHING)
        if ctx.params.get("plan"):
            return Plan.unchanged("--plan: would record now() and pg_current_wal_lsn()")
        return Plan.change("record now() and pg_current_wal_lsn(), then switch WAL so the point is archived")

    def apply(self, ctx, plan):
        from aep_ops.db import migrate_facts as facts
        from aep_ops.db.backends import backend_for

        cfg = migrate_config(ctx.settings)
        backend = backend_for(ctx.settings)
        backend.before_target_writes()  # a target must lie after the newest backup's (whole-second) end
        with connect(conn_params(ctx.settings, cfg)) as conn:
            point = facts.restore_point(conn)
            facts.commit_marker(conn)  # a commit after the point: recovery to it can stop there (and prove it)
            if cfg.dsn is None:
                backend.archive_now(conn, ctx.progress)
        env = "" if ctx.env_name == "local" else f" --env {ctx.env_name}"
        point["restore_command"] = f"inv pitr.restore{env} --target-time {point['time']}"
        ctx.note(f"restore point {point['time']} at LSN {point['lsn']}: {point['restore_command']}")
        ctx.summary["restore_point"] = point
        return point


class RunMigration(Step):
    id = "run_migration"
    title = "Apply the migrations with lock_timeout, bounded retries and the queue watcher"
    requires_approval = True

    def check(self, ctx):
        if ctx.params.get("plan"):
            return Plan.unchanged(f"--plan: would {'revert' if ctx.params.get('down') else 'apply'}"
                                  f" {len(ctx.output('pending_migrations', 'pending'))} migration(s)")
        cfg = migrate_config(ctx.settings)
        params = conn_params(ctx.settings, cfg)
        with connect(params) as conn:
            found = pending(ctx, cfg, params, conn)
        if not found:
            return Plan.unchanged(NOTHING)
        verb = "revert" if ctx.params.get("down") else "apply"
        return Plan.change(f"{verb} {', '.join(m.name for m in found)} (lock_timeout {cfg.lock_timeout_ms} ms,"
                           f" up to {cfg.retries} retries, cancel when writers wait > {cfg.max_queue_ms} ms)")

    def apply(self, ctx, plan):
        from aep_ops.db.migrate_apply import migrate

        cfg = migrate_config(ctx.settings)
        _restore_point_summary(ctx)
        outcome = migrate(ctx, cfg, conn_params(ctx.settings, cfg), tag(ctx.run_id))
        ctx.summary["migration"] = outcome
        return outcome


def _restore_point_summary(ctx: RunContext) -> None:
    try:
        ctx.summary["restore_point"] = ctx.step_outputs("record_restore_point")
    except Exception:  # noqa: BLE001 - OutputUnavailable: nothing recorded (a --down run before any)
        pass


class VerifyMigration(Step):
    id = "verify_migration"
    title = "Verify: the configured queries pass and no index is invalid"
    soft = True

    def check(self, ctx):
        from aep_ops.db import migrate_facts as facts

        if ctx.params.get("plan") or ctx.dry_run:
            return Plan.unchanged("runs after the migration")
        cfg = migrate_config(ctx.settings)
        failed = []
        queries = () if ctx.params.get("down") is not None else cfg.verify  # they describe the migrated schema
        with connect(conn_params(ctx.settings, cfg)) as conn:
            for query in queries:
                ok, value = facts.verify_query(conn, query)
                if not ok:
                    failed.append(f"{query[:80]!r} returned {value!r}")
            invalid = facts.invalid_indexes(conn)
        if invalid:
            failed.append(f"invalid index(es) {', '.join(invalid)} (a failed CREATE INDEX CONCURRENTLY: DROP INDEX"
                          " CONCURRENTLY it and build it again)")
            ctx.summary["invalid_indexes"] = invalid
        if failed:
            raise VerificationFailed("; ".join(failed), details={"failed": failed})
        return Plan.unchanged(f"{len(queries)} verification quer{'y' if len(queries) == 1 else 'ies'} passed,"
                              " no invalid index")


