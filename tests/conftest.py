"""Every test runs with its own state directory and only the configuration it writes itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No /etc or ~/.config layer, no stray AEP_OPS_* variable, a fresh state dir and redaction registry."""
    for name in list(os.environ):
        if name.startswith("AEP_OPS_"):
            monkeypatch.delenv(name)
    state = tmp_path / "state"
    monkeypatch.setenv("AEP_OPS_STATE_DIR", str(state))
    monkeypatch.setenv("AEP_OPS_NO_SYSTEM_CONFIG", "1")
    from aep_ops.base import log, redact

    redact.forget_all()
    log.configure(state, level="debug", tty=False)
    yield state
    redact.forget_all()


@pytest.fixture
def state_dir(isolated):
    return isolated


@pytest.fixture
def cli(isolated):
    """Run the CLI as a user does: a separate process, the real console scripts."""

    def run(*args: str, tool: str = "inv", env: dict | None = None, timeout: float = 120,
            check_rc: int | None = None) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        proc = subprocess.run([str(BIN / tool), *args], cwd=REPO, env=full_env, capture_output=True,
                              text=True, timeout=timeout)
        if check_rc is not None:
            assert proc.returncode == check_rc, (proc.returncode, proc.stdout, proc.stderr)
        return proc

    return run


def write_config(path: Path, text: str, monkeypatch) -> Path:
    path.write_text(text)
    monkeypatch.setenv("AEP_OPS_CONFIG", str(path))
    return path


@pytest.fixture
def local_env(monkeypatch):
    """A state dir the postgres user can traverse (pytest's tmp_path is 0700 root), a port for the
    local AEP source from the test allocator (outside the ephemeral range, locked for this
    session: aep_ops/testing/ports.py), a short archive_timeout; every cluster under it is
    stopped after (the teardown runs whether the test passed or not)."""
    import shutil
    import tempfile

    from aep_ops.testing.postgres import free_port, stop_clusters_under

    base = Path(tempfile.mkdtemp(prefix="aep-e2e-"))
    base.chmod(0o755)
    monkeypatch.setenv("AEP_OPS_STATE_DIR", str(base))
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__PORT", str(free_port()))
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__ARCHIVE_TIMEOUT", "5")
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__LOCAL__POSTGRES__SETTINGS__FSYNC", "off")
    yield base
    stop_clusters_under(base)
    from tests.support.processes import kill_matching

    kill_matching(f"--config={base}/pgbackrest/")  # async archive-push would recreate its spool dir
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def throwaway_runbook():
    """``make(id, steps)`` declares a runbook for one test; every one is unregistered after it."""
    from aep_ops.engine.runbook import runbook, unregister

    ids = []

    def make(rb_id, steps):
        ids.append(rb_id)

        @runbook(rb_id, steps=steps, summary="test")
        def func(ctx):
            """test"""

        return func

    yield make
    for rb_id in ids:
        unregister(rb_id)
