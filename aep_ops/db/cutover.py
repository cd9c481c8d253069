"""Where the application finds its database, and switching it to a restored copy.

local: the pointer file STATE_DIR/pg/active.json. rds: a Route 53 CNAME and/or the
application's Secrets Manager secret (``rds.cutover``). The old database is never touched,
so cutting back is pointing again; every change records what it replaced.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aep_ops.db import locations
from aep_ops.errors import ConfigError, UsageError


def active_pointer(settings: Any) -> Path:
    return locations.pg_root(settings) / "active.json"


def plan_local(settings: Any, name: str) -> tuple[bool, str, dict[str, Any]]:
    """(needed, summary, details) for pointing the local application at restore ``name``."""
    copy = locations.restored_copy(settings, name)
    if copy is None or copy.meta.get("status") != "promoted":
        raise UsageError(f"no verified restore named {name} (see `inv pitr.list`)")
    pointer = active_pointer(settings)
    current = json.loads(pointer.read_text()) if pointer.exists() else {}
    if current.get("name") == name:
        return False, f"the application already uses {name}", {"dsn": copy.meta["dsn"]}
    previous = current.get("dsn") or locations.local_db(settings).dsn()
    return True, f"point the application at {name} ({copy.meta['dsn']}); previous: {previous}", {"previous": previous}


def apply_local(settings: Any, name: str, previous: str, run_id: str | None) -> dict[str, Any]:
    copy = locations.restored_copy(settings, name)
    record = {"name": name, "dsn": copy.meta["dsn"], "previous": previous,
              "at": datetime.now(timezone.utc).isoformat(), "run_id": run_id}
    pointer = active_pointer(settings)
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, pointer)
    copy.meta["cutover"] = True
    copy.save()
    return record


def plan_rds(settings: Any, name: str) -> tuple[bool, str, dict[str, Any]]:
    from aep_ops.aws import client
    from aep_ops.db.backends.rds_facts import describe_instance

    conf = _rds_cutover_conf(settings)
    instance = describe_instance(client(settings, "rds"), name)
    if instance is None or instance.get("DBInstanceStatus") != "available":
        raise UsageError(f"no available DB instance {name} (see `inv pitr.list --env {settings.env_name}`)")
    address, port = instance["Endpoint"]["Address"], int(instance["Endpoint"]["Port"])
    levers = []
    if conf.get("route53_zone_id"):
        levers.append(f"CNAME {conf['record_name']} -> {address}")
    if conf.get("secret_id"):
        levers.append(f"secret {conf['secret_id']} host/port -> {address}:{port}")
    return True, "point " + " and ".join(levers), {"address": address, "port": port}


def apply_rds(settings: Any, details: dict[str, Any]) -> dict[str, Any]:
    from aep_ops.aws import client
    from aep_ops.db.backends.rds_cutover import point_route53, point_secret

    conf = _rds_cutover_conf(settings)
    done: dict[str, Any] = {}
    if conf.get("route53_zone_id"):
        change = point_route53(client(settings, "route53"), conf["route53_zone_id"], conf["record_name"],
                               details["address"])
        done["route53"] = {"record": change.record_name, "previous": change.previous, "current": change.current}
    if conf.get("secret_id"):
        change = point_secret(client(settings, "secretsmanager"), conf["secret_id"],
                              {"host": details["address"], "port": details["port"]})
        done["secret"] = {"secret_id": change.secret_id, "previous_version": change.previous_version_id,
                          "previous": dict(change.previous)}
    return done


def _rds_cutover_conf(settings: Any) -> dict[str, Any]:
    conf = (settings.env.get("rds") or {}).get("cutover") or {}
    if not (conf.get("route53_zone_id") and conf.get("record_name")) and not conf.get("secret_id"):
        raise ConfigError(f"environments.{settings.env_name}.rds.cutover: set route53_zone_id + record_name"
                          " and/or secret_id (how the application finds its database)")
    return conf
