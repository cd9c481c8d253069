"""Progress of real pgBackRest restores and backups, as a person on a terminal and a timer see it.

A real source (db.setup) grown by ~300 MiB of incompressible rows, so that copying takes a few
seconds with one pgBackRest process; the CLI runs under a real pseudo-terminal (os.openpty)
for the terminal view, and with pipes for the timer's view (JSON lines on stderr).
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from aep_ops.base.textfmt import size as format_bytes
from aep_ops.testing.postgres import free_port, stop_clusters_under
from tests.conftest import BIN, REPO
from tests.support.pitr_source import target_between

pytestmark = pytest.mark.slow
LINE = r"(?P<done>[\d.]+ (?:B|KiB|MiB|GiB)) of (?P<total>[\d.]+ (?:KiB|MiB|GiB)) \(\d+%\), [\d.]+ (?:KiB|MiB|GiB)/s, ETA"


@pytest.fixture(scope="module")
def big_source():
    base = Path(tempfile.mkdtemp(prefix="aep-progress-test-"))
    base.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AEP_OPS_")},
           "PYTHONPATH": str(REPO), "AEP_OPS_STATE_DIR": str(base), "AEP_OPS_NO_SYSTEM_CONFIG": "1",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT": str(free_port()),
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT": "5",
           "AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__SETTINGS__FSYNC": "off",
           "AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__PROCESS_MAX": "1"}  # one copier: a restore of seconds
    try:
        setup = subprocess.run([str(BIN / "inv"), "db.setup"], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=300)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        db = _db(env)
        with psycopg.connect(db.dsn(), autocommit=True) as conn:
            conn.execute("create extension if not exists pgcrypto")
            conn.execute("create table filler as select i, gen_random_bytes(1024) as b"
                         " from generate_series(1, 300000) i")
        backup = subprocess.run([str(BIN / "inv"), "backup.run", "--type", "full"], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        assert backup.returncode == 0, backup.stdout + backup.stderr
        target, _ = target_between(db, ["before-target"], ["after-target"])
        yield {"env": env, "db": db, "target": target.isoformat()}
    finally:
        stop_clusters_under(base)
        shutil.rmtree(base, ignore_errors=True)


def _db(env):
    from aep_ops import config
    from aep_ops.db import locations

    return locations.local_db(config.load("local", environ=env))


def run_in_pty(argv, env, timeout=300):
    """The CLI with stdin, stdout and stderr on a real terminal; everything it wrote to it."""
    master, slave = os.openpty()
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the run and whatever it started there
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def _sizes(db, label):
    [backup] = [b for b in db.backrest.info() if b.label == label]
    return backup


def test_a_restore_on_a_terminal_shows_bytes_of_the_backup_size_rate_and_eta(big_source):
    rc, screen = run_in_pty([str(BIN / "inv"), "pitr.restore", "--target-time", big_source["target"],
                             "--name", "pitr-tty"], big_source["env"])
    assert rc == 0, screen[-2000:]
    label = re.search(r"restoring backup (\S+) into", screen).group(1)
    total = format_bytes(_sizes(big_source["db"], label).database_size)
    redrawn = [part.strip() for part in screen.split("\r") if part.strip().startswith("restoring: ")]
    live = [m for m in (re.fullmatch("restoring: " + LINE + r" .*", p) for p in redrawn) if m]
    assert live, f"no progress line with bytes, total, rate and ETA in {redrawn}"
    assert {m.group("total") for m in live} == {total}, "the total is the backup's database size"
    # durations as textfmt writes them: "2.6 s" under 10 s, "12 s" above (the old \d+ failed on a fast machine)
    assert re.search(r"\r +restored [\d.]+ (?:MiB|GiB) in [\d.]+ s \([\d.]+ (?:MiB|GiB)/s\) *\r\n", screen), \
        "the rewritten line ends with a summary and a newline"
    assert "starting the copy on port" in screen.split("restored ")[-1], "the next phase starts on its own line"


def test_a_restore_off_a_terminal_logs_a_bounded_number_of_progress_events(big_source):
    proc = subprocess.run([str(BIN / "inv"), "pitr.restore", "--target-time", big_source["target"], "--name",
                           "pitr-log", "--json"], cwd=REPO, env=big_source["env"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "\r" not in proc.stderr, "no terminal control off a terminal"
    meta = json.loads(proc.stdout)["outputs"]["ensure_restored"]
    events = [e for e in map(json.loads, (ln for ln in proc.stderr.splitlines() if ln.startswith("{")))
              if e.get("event") == "step.progress" and e.get("phase") == "restore"]
    assert len(events) >= 2 and events[-1]["final"] and events[-1]["ok"]
    assert {e["run_id"] for e in events} == {json.loads(proc.stdout)["run_id"]}, "events belong to the run"
    assert {e["step"] for e in events} == {"ensure_restored"}
    size = _sizes(big_source["db"], meta["backup_label"]).database_size
    assert {e["bytes_total"] for e in events} - {None} == {size} and events[-1]["bytes_total"] == size
    done = [e["bytes_done"] for e in events]
    assert done == sorted(done) and done[-1] >= size
    seconds = events[-1]["elapsed_seconds"]
    # the start, the end, then one per 10 s or per 10 %, never two within a second
    assert len(events) <= 2 + min(10 + math.ceil(seconds / 10), math.ceil(seconds)), (len(events), seconds)


def test_a_backup_on_a_terminal_shows_bytes_of_the_previous_full_backup(big_source):
    db = big_source["db"]
    previous = [b for b in db.backrest.info() if b.type == "full" and not b.error][-1]
    rc, screen = run_in_pty([str(BIN / "inv"), "backup.run", "--type", "full"], big_source["env"])
    assert rc == 0, screen[-2000:]
    redrawn = [part.strip() for part in screen.split("\r") if part.strip().startswith("backing up: ")]
    live = [m for m in (re.fullmatch("backing up: " + LINE + r" .*", p) for p in redrawn) if m]
    assert live, f"no progress line with bytes, total, rate and ETA in {redrawn}"
    assert {m.group("total") for m in live} == {format_bytes(previous.repo_size)}
    assert re.search(r"\r +backed up [\d.]+ (?:MiB|GiB) in [\d.]+ s", screen)
