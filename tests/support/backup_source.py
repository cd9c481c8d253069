"""Helpers of the backup.* tests: SQL on the local source, step statuses of a run.
(The source itself is the ``source`` fixture in tests/integration/conftest.py.)"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import psycopg


def sql(state: Path, query: str) -> list[tuple]:
    port = os.environ["AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT"]
    with psycopg.connect(host=str(state / "pg/aep-source/sock"), port=port, user="postgres", dbname="aep",
                         autocommit=True) as conn:
        cur = conn.execute(query)
        return cur.fetchall() if cur.description else []


def steps(proc: subprocess.CompletedProcess) -> dict[str, str]:
    return {s["step_id"]: s["status"] for s in json.loads(proc.stdout)["steps"]}
