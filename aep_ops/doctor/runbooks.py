"""``doctor``: is this machine and this environment ready to run the runbooks?

Read-only. Each step is a soft check: every problem is reported with its fix, and the run
ends non-zero (5) if any was found. Rows land in each step's outputs for the table. The
machine's checks are here; what the environment's runbooks need of its database (the
source, archiving, backups, AWS credentials) is in ``aep_ops.doctor.environment``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.doctor.environment import AwsCredentials, BackupRecent, SourceReady
from aep_ops.doctor.rows import row as _row, rows_or_fail as _rows_or_fail
from aep_ops.base.errors import AepError
from aep_ops.executors.local import LocalExecutor
from aep_ops.base.secrets import SecretRef

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# tool -> (how to find it, version flag, Debian package that provides it)
TOOLS = {
    "initdb": (str(PG_BIN / "initdb"), "--version", "postgresql-15"),
    "pg_ctl": (str(PG_BIN / "pg_ctl"), "--version", "postgresql-15"),
    "pg_basebackup": (str(PG_BIN / "pg_basebackup"), "--version", "postgresql-client-15"),
    "psql": ("psql", "--version", "postgresql-client-15"),
    "pgbackrest": ("pgbackrest", "version", "pgbackrest"),
    "ssh": ("ssh", "-V", "openssh-client"),
    "logrotate": ("logrotate", "--version", "logrotate"),
    "nginx": ("nginx", "-v", "nginx-light"),
}
_VERSION = re.compile(r"\d+\.\d+(?:\.\d+)?(?:p\d+)?")


class ToolsPresent(Step):
    id = "tools_present"
    title = "Required tools are installed"
    soft = True

    def check(self, ctx):
        rows, runner = [], LocalExecutor()
        for name, (exe, flag, package) in TOOLS.items():
            path = exe if exe.startswith("/") and Path(exe).exists() else shutil.which(exe) or shutil.which(
                exe, path="/usr/sbin:/sbin")
            if not path:
                rows.append(_row(name, False, "not installed", f"apt-get install {package} (or `make test`)"))
                continue
            try:
                result = runner.run([os.path.abspath(path), flag], timeout=10)  # never a relative PATH entry
                match = _VERSION.search(result.stdout + result.stderr)
                rows.append(_row(name, True, match.group(0) if match else "present"))
            except AepError as exc:
                rows.append(_row(name, False, str(exc), f"reinstall {package}"))
        return _rows_or_fail(rows, "tool")


class ConfigValid(Step):
    id = "config_valid"
    title = "Configuration is valid and its secrets resolve"
    soft = True

    def check(self, ctx):
        from aep_ops.db.backends import backend_class

        rows = [_row("schema", True, f"environment {ctx.env_name} loaded")]
        for key, fix in backend_class(ctx.settings).config_problems(ctx.settings):
            rows.append(_row(key, False, "not set", fix))
        for key, ref in _secret_refs(ctx):
            try:
                ctx.secret(ref)
                rows.append(_row(key, True, f"{ref.ref} resolves"))
            except AepError as exc:
                rows.append(_row(key, False, str(exc), "provide the secret, or fix the reference"))
        return _rows_or_fail(rows, "configuration")


class StateDirWritable(Step):
    id = "state_dir_writable"
    title = "State directory is writable"
    soft = True

    def check(self, ctx):
        path = ctx.state_dir
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
                pass
            free = shutil.disk_usage(path).free / 2**30
            row = _row(str(path), True, f"writable, {free:.1f} GiB free")
        except OSError as exc:
            row = _row(str(path), False, exc.strerror or str(exc),
                       "set state_dir (or AEP_OPS_STATE_DIR) to a directory you can write")
        return _rows_or_fail([row], "state directory")


class EndpointsReachable(Step):
    id = "endpoints_reachable"
    title = "Configured endpoints are reachable"
    soft = True

    def check(self, ctx):
        rows = []
        for name, (host, port) in _endpoints(ctx).items():
            try:
                with socket.create_connection((host, port), timeout=3):
                    rows.append(_row(name, True, f"{host}:{port} accepts connections"))
            except OSError as exc:
                rows.append(_row(name, False, f"{host}:{port}: {exc.strerror or exc}",
                                 "check the address in aep-ops.yaml, the network path and the service"))
        if not rows:
            return Plan.unchanged("no endpoints configured for this environment", rows=[])
        return _rows_or_fail(rows, "endpoint")


def _secret_refs(ctx: RunContext) -> list[tuple[str, SecretRef]]:
    found: list[tuple[str, SecretRef]] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, SecretRef):
            found.append((path, node))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else key)

    walk(ctx.env, f"environments.{ctx.env_name}")
    walk(ctx.settings.get("journal") or {}, "journal")
    return found


def _endpoints(ctx: RunContext) -> dict[str, tuple[str, int]]:
    out: dict[str, tuple[str, int]] = {}
    for name, address in (ctx.env.get("endpoints") or {}).items():
        parsed = urlparse(address if "://" in address else f"tcp://{address}")
        default = {"https": 443, "http": 80}.get(parsed.scheme, 0)
        out[name] = (parsed.hostname or "", parsed.port or default)
    db = ctx.env.get("database") or {}
    if db.get("host"):
        out["database"] = (db["host"], int(db.get("port") or 5432))
    aws_url = (ctx.env.get("aws") or {}).get("endpoint_url")
    if aws_url:
        parsed = urlparse(aws_url)
        out["aws"] = (parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80))
    return out


@runbook("doctor", steps=[ToolsPresent, ConfigValid, StateDirWritable, EndpointsReachable, AwsCredentials,
                          SourceReady, BackupRecent],
         summary="Check this machine and the environment: tools, configuration, state directory, endpoints,"
                 " AWS credentials, the database source and its backups",
         mutating=False, read_only=True)
def doctor(ctx: RunContext) -> None:
    """No parameters: everything comes from the configuration of the chosen environment."""
