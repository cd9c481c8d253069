"""LocalExecutor: argv without a shell, deadlines, missing tools, running as another user."""

from __future__ import annotations

import os

import pytest

from aep_ops.base.errors import CommandTimeout, ExecutionError, ToolMissing
from aep_ops.executors import local
from aep_ops.executors.local import LocalExecutor, as_user
from tests.support.fleet_hosts import HeldCommand, call_while_held
from tests.support.processes import process_alive


def test_shell_metacharacters_in_arguments_are_literal(tmp_path):
    marker = tmp_path / "executed"
    nasty = f"$(touch {marker}); rm -rf {marker} `touch {marker}` | & > {marker}.out *"

    result = LocalExecutor().run(["printf", "%s", nasty])

    assert result.ok and result.stdout == nasty
    assert not marker.exists() and not (tmp_path / "executed.out").exists()


def test_nonzero_exit_is_a_result():
    result = LocalExecutor().run(["sh", "-c", "echo no >&2; exit 2"])

    assert (result.ok, result.exit_status, result.stderr, result.target) == (False, 2, "no\n", "localhost")


def test_deadline_raises_command_timeout(tmp_path):
    """The command blocks until the test releases it, after the timeout was seen: the answer came
    at the deadline, and the command was stopped there (nothing is left to release)."""
    held = HeldCommand(tmp_path / "held")
    try:
        with pytest.raises(CommandTimeout, match="within 0.2s"):
            call_while_held(lambda: LocalExecutor().run(["sh", "-c", held.shell], timeout=0.2), held.release,
                            what="CommandTimeout at the 0.2 s deadline")
        assert not held.running() and not held.release(), "the command outlived its deadline"
    finally:
        held.release()
    assert not held.done.exists()


def test_missing_tool_raises_tool_missing():
    with pytest.raises(ToolMissing, match="aep-no-such-tool"):
        LocalExecutor().run(["aep-no-such-tool", "--version"])


def test_as_user_uses_runuser_when_root(monkeypatch):
    monkeypatch.setattr(local.getpass, "getuser", lambda: "root")
    monkeypatch.setattr(local.os, "geteuid", lambda: 0)

    assert as_user(["pg_ctl", "status"], "postgres") == ["runuser", "-u", "postgres", "--", "pg_ctl", "status"]
    assert as_user(["id"], "root") == ["id"]
    assert as_user(["id"], None) == ["id"]


def test_as_user_refuses_without_root(monkeypatch):
    monkeypatch.setattr(local.getpass, "getuser", lambda: "alice")
    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)

    with pytest.raises(ExecutionError, match="not running as root"):
        as_user(["pg_ctl"], "postgres")


def test_runs_as_another_user_for_real():
    """Root on CI: the command really runs as nobody; elsewhere it must refuse, not pretend."""
    if os.geteuid() == 0:
        assert LocalExecutor().run(["id", "-un"], user="nobody").stdout.strip() == "nobody"
    else:
        with pytest.raises(ExecutionError):
            LocalExecutor().run(["id", "-un"], user="nobody")


def test_deadline_also_stops_what_the_command_started(tmp_path):
    """pgBackRest runs under runuser and starts workers: a deadline must not leave them running."""
    pidfile = tmp_path / "grandchild.pid"
    with pytest.raises(CommandTimeout):
        LocalExecutor().run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], timeout=1.5)
    grandchild = int(pidfile.read_text())
    assert not process_alive(grandchild), "the command's child outlived the deadline"


def test_a_deadline_waits_for_children_that_exit_slowly_on_sigterm(tmp_path):
    """Like pgBackRest's workers, which clean up on SIGTERM: the command itself is gone at once,
    its child a second later. The run returns only once the child is gone too."""
    pidfile = tmp_path / "worker.pid"
    worker = "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.05; done"
    with pytest.raises(CommandTimeout):
        LocalExecutor().run(["sh", "-c", f"sh -c \"{worker}\" & echo $! > {pidfile}; wait"], timeout=1.5)
    assert not process_alive(int(pidfile.read_text())), "returned while the command's child still ran"


def test_deadline_stops_a_command_run_as_another_user():
    if os.geteuid() != 0:
        pytest.fail("CI runs as root; this test needs runuser")
    import tempfile

    with tempfile.TemporaryDirectory() as shared:  # pytest's tmp_path is not reachable for nobody
        os.chmod(shared, 0o777)
        pidfile = os.path.join(shared, "worker.pid")
        with pytest.raises(CommandTimeout):
            LocalExecutor().run(["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], user="nobody", timeout=1.5)
        with open(pidfile) as handle:
            assert not process_alive(int(handle.read()))
