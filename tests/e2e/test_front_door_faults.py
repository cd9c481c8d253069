"""What a careless user (or a full disk) does to the front door: blank flags that would widen
the target, output paths that cannot be written, ids that are paths, a reader that leaves,
a journal that cannot be written. Each ends in one line and a documented exit code, and
nothing half-done."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys

import pytest

from tests.conftest import BIN, REPO

TOOLS = ("inv", "aep-ops")


def _last_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def _no_traceback(proc) -> None:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("args, says", [
    (("demo.greet", "--name", "x", "--env", ""), "--env is empty"),
    (("demo.greet", "--name", "x", "--env", "  "), "--env is empty"),
    (("demo.greet", "--name", "x", "--resume", ""), "--resume is empty"),
    (("runs.list", "--env", ""), "--env is empty"),
])
def test_a_blank_flag_is_refused_not_taken_as_the_default(cli, state_dir, tool, args, says):
    proc = cli(*args, tool=tool)
    assert proc.returncode == 2, proc.stderr
    assert says in _last_line(proc) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    _no_traceback(proc)
    assert not (state_dir / "demo").exists(), "nothing was done: on main `--resume ''` ran the runbook"


@pytest.mark.parametrize("tool", TOOLS)
def test_an_output_path_that_cannot_be_written_is_refused_before_the_first_step(cli, state_dir, tmp_path, tool):
    a_dir = tmp_path / "reports"
    a_dir.mkdir()
    for path, says in [(tmp_path / "missing" / "out.json", "does not exist"), (a_dir, "is a directory"),
                       ("", "--json-file is empty")]:
        proc = cli("demo.greet", "--name", "x", "--json-file", str(path), tool=tool)
        assert proc.returncode == 2, proc.stderr
        assert says in _last_line(proc), proc.stderr
        _no_traceback(proc)
    assert not (state_dir / "demo").exists(), "exit 2 means nothing changed; on main the whole runbook ran first"
    assert list(tmp_path.rglob("*.tmp")) == [] and list(a_dir.iterdir()) == []
    runs = cli("runs.list", "--json", check_rc=0).stdout
    assert json.loads(runs) == [], "a refused run is not a run"


def test_json_file_is_written_whole_and_leaves_no_temporary_file(cli, tmp_path):
    out = tmp_path / "out.json"
    cli("demo.greet", "--name", "x", "--json-file", str(out), check_rc=0)
    assert json.loads(out.read_text())["status"] == "succeeded"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "state") == ["out.json"]


@pytest.mark.parametrize("ident", ["../README", "../docs/architecture", "../../README", str(REPO / "README"), "dr.drill/../../../README", "/etc/passwd",
                                   "..", ""])
def test_runbooks_show_takes_an_id_never_a_path(cli, ident):
    proc = cli("runbooks.show", ident, tool="aep-ops")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stdout == "" and "no runbook" in _last_line(proc)
    _no_traceback(proc)


def test_runbooks_show_suggests_the_id_meant(cli):
    proc = cli("runbooks.show", "dr.drll")
    assert proc.returncode == 2 and "did you mean dr.drill?" in _last_line(proc), proc.stderr
    assert cli("runbooks.show", "dr.drill", check_rc=0).stdout.startswith("---")


def _closed_pipe_run(args, env=None):
    """Run with stdout on a pipe whose reader has already gone: every write gets EPIPE
    (what `| head -1` does once head has its line, without depending on timing)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([str(BIN / "aep-ops"), *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=120)
    finally:
        os.close(write_end)


def test_a_reader_that_leaves_ends_the_listing_quietly(cli, state_dir):
    cli("demo.greet", "--name", "x", check_rc=0)
    for args in (("runs.list",), ("dr.history",), ("runbooks.list",), ("runs.show", "--json",
                 json.loads(cli("runs.list", "--json", check_rc=0).stdout)[0]["id"])):
        proc = _closed_pipe_run(args)
        assert (proc.returncode, proc.stderr) == (0, ""), (args, proc.returncode, proc.stderr)


def test_a_reader_that_leaves_does_not_change_a_runbook_outcome(state_dir):
    proc = _closed_pipe_run(("demo.greet", "--name", "piped"))
    assert proc.returncode == 0 and "internal error" not in proc.stderr, proc.stderr
    assert (state_dir / "demo" / "greeting.txt").read_text().strip() == "Hello, piped!"


def _limited(limit: int):
    """The kernel refuses to grow any file past ``limit`` bytes (EFBIG, SIGXFSZ ignored by Python;
    SQLite needs 32 KiB for its -shm file, so a journal limit sits above that).
    Stand-in for a full disk: filling a real file system needs a mount of its own, which an
    unprivileged CI container cannot make; the journal and the log see the same failed write."""
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_a_full_disk_is_one_line_the_run_settled_and_the_log_whole(cli, state_dir):
    cli("demo.greet", "--name", "first", check_rc=0)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(BIN / "aep-ops"), "demo.greet", "--name", "second"], env=env, cwd=REPO, text=True,
                          capture_output=True, preexec_fn=_limited(40000), timeout=120)
    assert proc.returncode == 1, proc.stderr
    _no_traceback(proc)
    last = _last_line(proc)
    assert last.startswith(f"error: cannot use the run journal {state_dir / 'journal.sqlite3'}: the disk is full"), last
    run_id = last.rsplit("--resume ", 1)[1]
    for line in (state_dir / "logs" / "aep-ops.jsonl").read_text().splitlines():
        json.loads(line)  # no half line left behind
    runs = {r["id"]: r for r in json.loads(cli("runs.list", "--json", check_rc=0).stdout)}
    assert runs[run_id]["status"] in ("failed", "interrupted"), "the run does not stay 'running' for ever"
    resumed = cli("demo.greet", "--resume", run_id, check_rc=0)
    assert "result: succeeded" in resumed.stdout
    assert (state_dir / "demo" / "greeting.txt").read_text().strip() == "Hello, second!"
    assert [p for p in state_dir.rglob("*") if p.name.endswith(".tmp")] == []


def test_the_log_file_never_keeps_half_a_line(tmp_path):
    code = ("import sys; from pathlib import Path; from aep_ops.base import log\n"
            "log.configure(Path(sys.argv[1]), tty=False, stream=open('/dev/null', 'w'))\n"
            "for i in range(400): log.get_logger('t').info('event', n=i, pad='x' * 100)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          preexec_fn=_limited(20000), timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "logs" / "aep-ops.jsonl").read_text()
    assert text.endswith("\n") and len(text) <= 20000
    assert [json.loads(line)["n"] for line in text.splitlines()] == list(range(len(text.splitlines())))
    complaints = proc.stderr.strip().splitlines()
    assert len(complaints) == 1 and "cannot write the log file" in complaints[0], proc.stderr


def _read_only(path):
    """Make ``path`` read-only for the CLI: chmod, and when we are root (who ignores file
    modes), also drop CAP_DAC_OVERRIDE from the CLI process (setpriv, util-linux)."""
    path.chmod(0o444)
    if os.geteuid() != 0:
        return []
    assert shutil.which("setpriv"), "util-linux's setpriv is needed to run the CLI as root without DAC override"
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_a_read_only_journal_is_one_line_and_nothing_is_done(cli, state_dir):
    cli("demo.greet", "--name", "first", check_rc=0)
    shutil.rmtree(state_dir / "demo")
    prefix = _read_only(state_dir / "journal.sqlite3")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run([*prefix, str(BIN / "aep-ops"), "demo.greet", "--name", "second"], env=env, cwd=REPO,
                              text=True, capture_output=True, timeout=120)
        listing = subprocess.run([*prefix, str(BIN / "aep-ops"), "runs.list"], env=env, cwd=REPO, text=True,
                                 capture_output=True, timeout=120)
    finally:
        (state_dir / "journal.sqlite3").chmod(0o644)
    assert proc.returncode == 2, proc.stderr
    _no_traceback(proc)
    assert f"cannot use the run journal {state_dir / 'journal.sqlite3'}: it is read-only" in _last_line(proc)
    assert not (state_dir / "demo").exists(), "refused before the first step"
    assert listing.returncode == 0 and "succeeded" in listing.stdout, "a read-only journal can still be read"
