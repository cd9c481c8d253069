"""Backend ``rds``: Amazon RDS automated backups, restore into a new tagged instance,
verification over psycopg at its endpoint (or at ``rds.endpoint_map`` in tests), cutover
through a Route 53 CNAME and/or the application's Secrets Manager secret (``rds.cutover``).

The rules RDS would only enforce late are checked first in ``rds_facts``; the restore call and
its waits are in ``rds_restore``, the DNS and secret changes in ``rds_cutover``. The client is
made when first used, so reading the configuration (``db.url``) needs neither boto3 nor
``rds.instance_id``.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

from aep_ops.db.backends import DatabaseBackend, name_taken
from aep_ops.base.errors import ConfigError, StepFailed, UsageError, VerificationFailed
from aep_ops.base.timefmt import iso_from_timestamp


class Backend(DatabaseBackend):
    self_hosted = False
    managed_by = "managed by Amazon RDS"

    @classmethod
    def config_problems(cls, settings: Any) -> list[tuple[str, str]]:
        env, where = settings.env, f"environments.{settings.env_name}"
        problems = []
        if not (env.get("aws") or {}).get("region"):
            problems.append((f"{where}.aws.region", "set the AWS region of this environment in aep-ops.yaml"))
        if not (env.get("rds") or {}).get("instance_id"):
            problems.append((f"{where}.rds.instance_id", "set it to the source DB instance identifier in aep-ops.yaml"
                             f" (or --set {where}.rds.instance_id=ID); every pitr.* and dr.drill run needs it"))
        return problems

    @property
    def original_id(self) -> str:
        """``rds.instance_id``: the original source (``source_id`` is the active one)."""
        instance_id = (self.settings.env.get("rds") or {}).get("instance_id")
        if not instance_id:
            raise ConfigError(f"environments.{self.settings.env_name}.rds.instance_id is required for the rds backend")
        return instance_id

    @functools.cached_property
    def rds(self) -> Any:
        from aep_ops.aws import client

        self.original_id  # a missing instance id is the first thing to say
        return client(self.settings, "rds")

    @functools.cached_property
    def source_id(self) -> str:
        """The active source, which facts, restores and drills act on: the instance the application's
        cutover lever points at (read back from Route 53 / the secret), else ``rds.instance_id``."""
        return self.active_name()

    def connection_params(self) -> dict[str, Any]:
        """From ``database.*``, falling back to ``rds.*``."""
        env, name = self.settings.env, self.settings.env_name
        database, rds = env.get("database") or {}, env.get("rds") or {}
        if not database.get("host"):
            raise UsageError(f"environments.{name}.database.host is not set: aep-ops cannot build the DSN of the"
                             f" {env.get('backend')} database without it; set it to the instance endpoint"
                             f" (e.g. with --set environments.{name}.database.host=HOST)")
        user = database.get("user") or rds.get("master_user")
        if not user:
            raise UsageError(f"environments.{name}.database.user (or rds.master_user) is not set")
        return {"host": database["host"], "port": int(database.get("port") or 5432),
                "dbname": database.get("name") or rds.get("dbname") or "aep", "user": user,
                "sslmode": database.get("sslmode") or "require",
                "password": database.get("password") or rds.get("master_password")}

    def source_running(self) -> bool:
        return True  # RDS keeps it running; a stopped instance fails the preflight with its status

    def facts(self) -> Any:
        from aep_ops.db.backends.rds_facts import source_facts

        return source_facts(self.rds, self.source_id)

    def archive_facts(self) -> dict[str, Any]:
        from aep_ops.db.backends.rds_facts import archive_lag, check_backups, required_retention_days

        facts = self.facts()
        lag = archive_lag(facts, datetime.now(timezone.utc))
        return {"last_archived_at": facts.latest_restorable_time, "failing": False,
                "archive_lag_seconds": lag.total_seconds() if lag is not None else None,
                "problems": check_backups(facts, required_retention_days=required_retention_days(self.settings))}

    def check_target(self, target: datetime) -> dict[str, Any]:
        from aep_ops.db.backends.rds_facts import validate_restore_request

        facts = self.facts()
        validate_restore_request(facts, target_time=target, now=datetime.now(timezone.utc))
        latest = facts.latest_restorable_time
        return {"backup_label": f"automated backups of {self.source_id}", "backup_stop": None,
                "archive_lag_seconds": (datetime.now(timezone.utc) - latest).total_seconds() if latest else None}

    def restore_state(self, name: str, target: datetime) -> tuple[str, dict[str, Any] | None]:
        from aep_ops.db.backends.rds_facts import TAG_CREATED_BY, TAG_TARGET_TIME, describe_instance, iso, tags_of

        instance = describe_instance(self.rds, name)
        if instance is None:
            return "absent", None
        tags = tags_of(self.rds, instance)
        if tags.get(TAG_CREATED_BY) != "aep-ops" or tags.get(TAG_TARGET_TIME) != iso(target):
            return "other", None
        meta = self._meta(name, target, instance)
        return ("done", meta) if instance.get("DBInstanceStatus") == "available" else ("partial", meta)

    def restore(self, name: str, target: datetime, *, run_id: str | None, purpose: str, progress: Any,
                timeout: float, fast_replay: bool = False) -> dict[str, Any]:
        """``fast_replay`` does not apply: RDS manages fsync and full_page_writes itself."""
        from aep_ops.db.backends.rds_restore import restore_to_new_instance

        state, _ = self.restore_state(name, target)
        if state == "other":
            raise name_taken(name)
        started = time.time()
        progress(f"restoring {self.source_id} to {target.isoformat()} into DB instance {name}")
        restored = restore_to_new_instance(self.rds, self.facts(), new_id=name, target_time=target,
                                           run_id=run_id or "", wait_timeout=timeout, progress=progress)
        from aep_ops.db.backends.rds_facts import describe_instance

        meta = self._meta(name, target, describe_instance(self.rds, name))
        meta.update({"purpose": purpose, "run_id": run_id, "restore_started_at": iso_from_timestamp(started),
                     "promoted_at": iso_from_timestamp(time.time()), "restore_seconds": round(time.time() - started, 3),
                     "recovery_seconds": 0.0, "changed": restored.changed})
        return meta

    def verify(self, meta: dict[str, Any], target: datetime, smoke_queries: list[str]) -> dict[str, Any]:
        """As for a local copy, minus the timeline (RDS does not expose it meaningfully)."""
        from aep_ops.db.verify import verify_copy

        with self.connect_restored(meta["name"]) as conn:
            return verify_copy(conn, target, smoke_queries, min_timeline=None)

    @contextmanager
    def connect_restored(self, name: str) -> Iterator[Any]:
        from aep_ops.db.backends.rds_facts import describe_instance

        instance = describe_instance(self.rds, name)
        if instance is None:
            raise VerificationFailed(f"DB instance {name} is gone; run again")
        with self._connect(name, instance) as conn:
            yield conn

    @contextmanager
    def connect_source(self) -> Iterator[Any]:
        from aep_ops.db.backends.rds_facts import describe_instance

        with self._connect(self.source_id, describe_instance(self.rds, self.source_id)) as conn:
            yield conn

    def free_bytes(self) -> int | None:
        return None  # RDS allocates storage for the new instance itself

    def wait_until_restorable(self, target: datetime, progress: Any, timeout: float = 900, poll: float = 15) -> None:
        """RDS ships WAL to S3 every few minutes: wait until LatestRestorableTime passes the target."""
        deadline = time.monotonic() + timeout
        while True:
            latest = self.facts().latest_restorable_time
            if latest is not None and latest >= target:
                return
            if time.monotonic() > deadline:
                raise StepFailed(f"{self.source_id}: LatestRestorableTime {latest.isoformat() if latest else 'unknown'}"
                                 f" did not reach the target {target.isoformat()} within {timeout:.0f}s; RDS may"
                                 " have stopped shipping WAL: check the instance's events, or pass an older target")
            progress(f"waiting for RDS to make {target.isoformat()} restorable"
                     f" (restorable up to {latest.isoformat() if latest else 'unknown'})")
            time.sleep(poll)

    def discard(self, name: str) -> bool:
        from aep_ops.db.backends.rds_restore import delete_restored

        if name != self.original_id and name == self.active_name():
            raise UsageError(f"{name} is the database the application uses (active); cut over to another first"
                             f" (`inv pitr.cutover --env {self.settings.env_name} {self.original_id}`)")

        return delete_restored(self.rds, name)

    def copies(self) -> list[dict[str, Any]]:
        from aep_ops.db.backends.rds_restore import restored_instances

        mine = restored_instances(self.rds)  # restores of the original and of copies cut over to since
        sources, found = {self.original_id.lower()}, []
        while True:
            more = [r for r in mine if (r.source_id or "").lower() in sources and r not in found]
            if not more:
                return [{"name": r.instance_id, **r.to_record()} for r in found]
            found += more
            sources |= {r.instance_id.lower() for r in more}

    def exists(self, name: str) -> bool:
        from aep_ops.db.backends.rds_facts import describe_instance

        return describe_instance(self.rds, name) is not None

    # --- cutover (both ways: to a restored instance, back to the original; levers in rds_cutover) ---

    def source_name(self) -> str:
        return self.original_id

    def active_name(self) -> str:
        """Read back, not remembered: the instance (the original or one aep-ops restored) whose endpoint
        the Route 53 CNAME (else the secret's host) names; the original when none matches."""
        from aep_ops.db.backends.rds_cutover import same_host

        conf = (self.settings.env.get("rds") or {}).get("cutover") or {}
        if not (conf.get("route53_zone_id") and conf.get("record_name")) and not conf.get("secret_id"):
            return self.original_id
        host = self._lever_hosts(conf)[0]
        for instance_id in [self.original_id] + [r["name"] for r in self.copies()]:
            address = self._endpoint(instance_id)[0]
            if same_host(host, address):
                return instance_id
        return self.original_id

    def plan_protect(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        from aep_ops.db.backends.rds_facts import required_retention_days

        instance = self._cutover_instance(name)
        days, wanted = int(instance.get("BackupRetentionPeriod") or 0), required_retention_days(self.settings)
        if days >= wanted:
            return False, f"automated backups of {name} kept {days} days (WAL archived by RDS)", {"retention_days": days}
        return True, f"set BackupRetentionPeriod of {name} from {days} to {wanted} days", {"retention_days": wanted}

    def apply_protect(self, name: str, details: dict[str, Any], progress: Any) -> dict[str, Any]:
        from aep_ops.aws.clients import aws_errors
        from aep_ops.db.backends.rds_restore import wait_available

        with aws_errors(self.rds, f"turning automated backups on for {name}", resource=name):
            self.rds.modify_db_instance(DBInstanceIdentifier=name, BackupRetentionPeriod=details["retention_days"],
                                        ApplyImmediately=True)
        wait_available(self.rds, name, progress=progress)
        return {"retention_days": details["retention_days"]}

    def verify_protect(self, name: str) -> None:
        needed, summary, _ = self.plan_protect(name)
        if needed:
            raise VerificationFailed(f"{name}: still not protected ({summary})")

    def plan_cutover(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        from aep_ops.db.backends.rds_cutover import same_host

        conf = self._cutover_conf()
        instance = self._cutover_instance(name)
        address, port = instance["Endpoint"]["Address"], int(instance["Endpoint"]["Port"])
        host, secret = self._lever_hosts(conf)
        levers = []
        if conf.get("route53_zone_id") and not same_host(host, address):
            levers.append(f"CNAME {conf['record_name']} -> {address}")
        if conf.get("secret_id") and (not same_host(secret[0], address) or secret[1] != port):
            levers.append(f"secret {conf['secret_id']} host/port -> {address}:{port}")
        current = self.active_name()
        details = {"address": address, "port": port, "previous_name": current, "from": current, "to": name}
        if not levers:
            return False, f"the application already uses {name} ({address}:{port})", details
        return True, "point " + " and ".join(levers) + f" (from {current})", details

    def apply_cutover(self, name: str, details: dict[str, Any], run_id: str | None) -> dict[str, Any]:
        from aep_ops.aws import client
        from aep_ops.db.backends.rds_cutover import point_route53, point_secret

        conf = self._cutover_conf()
        done: dict[str, Any] = {"from": details["from"], "to": name}
        if conf.get("route53_zone_id"):
            change = point_route53(client(self.settings, "route53"), conf["route53_zone_id"], conf["record_name"],
                                   details["address"])
            done["route53"] = {"record": change.record_name, "previous": change.previous, "current": change.current}
        if conf.get("secret_id"):
            change = point_secret(client(self.settings, "secretsmanager"), conf["secret_id"],
                                  {"host": details["address"], "port": details["port"]})
            done["secret"] = {"secret_id": change.secret_id, "previous_version": change.previous_version_id,
                              "previous": dict(change.previous)}
        return done

    def verify_cutover(self, name: str) -> None:
        needed, summary, _ = self.plan_cutover(name)  # reads the record and the secret back
        if needed:
            raise VerificationFailed(f"after the cutover to {name}, still to do: {summary}; check them by hand")

    def plan_first_backup(self, name: str) -> tuple[bool, str, dict[str, Any]]:
        days = int(self._cutover_instance(name).get("BackupRetentionPeriod") or 0)
        return False, (f"RDS takes {name}'s automated backups itself ({days}-day retention; the first one right"
                       " after a restore or after retention is turned on)"), {"retention_days": days}

    def apply_first_backup(self, name: str, details: dict[str, Any], progress: Any) -> dict[str, Any]:
        return {}  # never called: plan_first_backup says RDS does it

    def check_archiving(self, name: str) -> dict[str, Any]:
        from aep_ops.db.backends.rds_facts import archive_lag, check_backups, required_retention_days, source_facts

        facts = source_facts(self.rds, name)
        problems = check_backups(facts, required_retention_days=required_retention_days(self.settings))
        if problems:
            raise VerificationFailed("; ".join(problems))
        lag = archive_lag(facts, datetime.now(timezone.utc))
        return {"summary": f"{name} restorable up to {facts.latest_restorable_time.isoformat()}",
                "lag_seconds": lag.total_seconds() if lag is not None else None}

    def _cutover_conf(self) -> dict[str, Any]:
        conf = (self.settings.env.get("rds") or {}).get("cutover") or {}
        if not (conf.get("route53_zone_id") and conf.get("record_name")) and not conf.get("secret_id"):
            raise ConfigError(f"environments.{self.settings.env_name}.rds.cutover: set route53_zone_id + record_name"
                              " and/or secret_id (how the application finds its database)")
        return conf

    def _cutover_instance(self, name: str) -> dict[str, Any]:
        """An available instance the application may be pointed at: the original or one aep-ops restored."""
        from aep_ops.db.backends.rds_facts import TAG_CREATED_BY, describe_instance, tags_of

        instance = describe_instance(self.rds, name)
        if instance is None or instance.get("DBInstanceStatus") != "available":
            raise UsageError(f"no available DB instance {name} (see `inv pitr.list --env {self.settings.env_name}`)")
        if name != self.original_id and tags_of(self.rds, instance).get(TAG_CREATED_BY) != "aep-ops":
            raise UsageError(f"DB instance {name} was not restored by aep-ops nor is it rds.instance_id; refusing to"
                             " point the application at it")
        return instance

    def _lever_hosts(self, conf: dict[str, Any]) -> tuple[str | None, tuple[str | None, int | None]]:
        """(the CNAME's target, else the secret's host; the secret's (host, port)), read now."""
        from aep_ops.aws import client
        from aep_ops.db.backends.rds_cutover import cname_target, secret_endpoint

        secret = secret_endpoint(client(self.settings, "secretsmanager"), conf["secret_id"]) \
            if conf.get("secret_id") else (None, None)
        if conf.get("route53_zone_id") and conf.get("record_name"):
            return cname_target(client(self.settings, "route53"), conf["route53_zone_id"], conf["record_name"]), secret
        return secret[0], secret

    def _endpoint(self, instance_id: str) -> tuple[str | None, int | None]:
        from aep_ops.db.backends.rds_facts import describe_instance

        endpoint = (describe_instance(self.rds, instance_id) or {}).get("Endpoint") or {}
        return endpoint.get("Address"), endpoint.get("Port")

    # --- helpers ---

    @contextmanager
    def _connect(self, instance_id: str, instance: dict[str, Any] | None) -> Iterator[Any]:
        from aep_ops.pg.connect import connect
        from aep_ops.db.backends.rds_facts import Endpoint, endpoint_for_verification, verification_params

        raw = (instance or {}).get("Endpoint") or {}
        endpoint = endpoint_for_verification(self.settings, instance_id,
                                             Endpoint(raw.get("Address", ""), int(raw.get("Port") or 5432)))
        conn = connect(verification_params(self.settings, endpoint))
        try:
            conn.autocommit = True
            yield conn
        finally:
            conn.close()

    def _meta(self, name: str, target: datetime, instance: dict[str, Any] | None) -> dict[str, Any]:
        endpoint = ((instance or {}).get("Endpoint") or {})
        address = f"{endpoint.get('Address')}:{endpoint.get('Port')}" if endpoint else None
        rds = self.settings.env.get("rds") or {}
        dsn = (f"host={endpoint.get('Address')} port={endpoint.get('Port')} dbname={rds.get('dbname') or 'postgres'}"
               f" user={rds.get('master_user') or 'postgres'} sslmode=require") if endpoint else None
        return {"name": name, "instance_id": name, "source": self.source_id, "target_time": target.isoformat(),
                "status": (instance or {}).get("DBInstanceStatus"), "endpoint": address, "dsn": dsn,
                "backup_label": f"automated backups of {self.source_id}", "port": endpoint.get("Port")}

