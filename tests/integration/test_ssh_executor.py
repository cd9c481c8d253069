"""SshExecutor and run_on_all against real sshd processes (aep_ops.testing.sshd)."""

from __future__ import annotations

import getpass
import os

import pytest

from aep_ops.base.errors import CommandTimeout, ExecutionError, HostKeyError, HostUnreachable
from aep_ops.executors.fleet import run_on_all
from aep_ops.executors.ssh import remote_command
from aep_ops.testing.sshd import generate_key, known_hosts_line, public_key_fingerprint
from tests.support.fleet_hosts import HeldCommand, HeldHost, call_while_held, wait_until
from tests.support.processes import process_alive


def test_runs_a_command_and_reports_what_happened(ssh_host):
    with ssh_host.executor() as ex:
        result = ex.run(["sh", "-c", 'echo "$(id -un) $SSH_CONNECTION"'])

    assert result.ok and result.exit_status == 0
    user, _client_ip, _client_port, server_ip, server_port = result.stdout.split()
    assert (user, server_ip, int(server_port)) == (getpass.getuser(), ssh_host.address, ssh_host.port)
    assert result.target == ex.target == f"{getpass.getuser()}@{ssh_host.address}:{ssh_host.port}"
    assert result.duration > 0  # how long it took: bench/deadlines.py measures, tests do not


def test_nonzero_exit_is_a_result_not_an_exception(ssh_host):
    with ssh_host.executor() as ex:
        result = ex.run(["sh", "-c", "echo partial; echo 'disk full' >&2; exit 3"])

    assert not result.ok
    assert (result.exit_status, result.stdout, result.stderr) == (3, "partial\n", "disk full\n")
    assert result.describe().endswith("exited 3: disk full")


def test_arguments_arrive_literally_through_the_remote_shell(ssh_host, tmp_path):
    marker = tmp_path / "executed"
    nasty = f"a  b $(touch {marker}); rm -rf {marker}.d `touch {marker}` | cat & > {marker} 'q' \"dq\" \\ * ~ \n;"

    with ssh_host.executor() as ex:
        result = ex.run(["printf", "%s", nasty])

    assert result.stdout == nasty
    assert not marker.exists(), "a shell metacharacter in an argument was executed remotely"


def test_input_and_env_reach_the_command(ssh_host):
    with ssh_host.executor() as ex:
        piped = ex.run(["cat"], input="line one\nline two\n")
        env = ex.run(["sh", "-c", 'printf %s "$GREETING"'], env={"GREETING": "hi; $(there)"})

    assert piped.stdout == "line one\nline two\n"
    assert env.stdout == "hi; $(there)"


def test_remote_command_quotes_and_runs_as_user_via_sudo():
    assert remote_command(["pg_ctl", "status", "-D", "/var/lib/pg data"], env={"PGPORT": "5433"}, user="postgres") == (
        "sudo -n -u postgres -- env PGPORT=5433 pg_ctl status -D '/var/lib/pg data'"
    )
    with pytest.raises(ExecutionError, match="invalid environment variable"):
        remote_command(["true"], env={"A=B; rm": "x"})


def test_user_equal_to_the_login_user_needs_no_sudo(ssh_host):
    with ssh_host.executor() as ex:
        assert ex.run(["id", "-un"], user=ssh_host.user).stdout.strip() == ssh_host.user


def test_unknown_host_key_is_refused(ssh_host, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    with pytest.raises(HostKeyError) as caught, ssh_host.executor(known_hosts=empty) as ex:
        ex.run(["touch", str(tmp_path / "should-not-exist")])

    message = str(caught.value)
    assert f"{ssh_host.address}:{ssh_host.port}" in message
    assert ssh_host.host_key_fingerprint in message
    assert f"ssh-keyscan -p {ssh_host.port} -t ed25519 -- {ssh_host.address} >> {empty}" in message
    assert "out of band" in message
    assert not (tmp_path / "should-not-exist").exists()


def test_changed_host_key_is_refused_as_possible_mitm(ssh_host, tmp_path):
    impostor = generate_key(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(known_hosts_line(ssh_host.address, ssh_host.port, impostor) + "\n")

    with pytest.raises(HostKeyError) as caught, ssh_host.executor(known_hosts=known) as ex:
        ex.run(["true"])

    message = str(caught.value)
    assert "CHANGED" in message and "man-in-the-middle" in message and "Do not proceed" in message
    assert ssh_host.host_key_fingerprint in message
    assert public_key_fingerprint(impostor) in message


def test_command_deadline_raises_command_timeout_and_connection_survives(ssh_host, tmp_path):
    """The remote command blocks until the test releases it, which it does only after the
    timeout was reported: the answer came at the deadline, not when the command ended."""
    held = HeldCommand(tmp_path / "held")
    with ssh_host.executor() as ex:
        try:
            with pytest.raises(CommandTimeout, match=r"`sh` did not finish within 0.5s"):
                call_while_held(lambda: ex.run(["sh", "-c", held.shell], timeout=0.5), held.release,
                                what="CommandTimeout at the 0.5 s deadline")
            assert not held.done.exists()
            wait_until(held.running, "the remote command running on after its channel closed")
        finally:
            held.release()
        assert ex.run(["true"]).ok  # same executor, still usable


def test_stopped_host_is_unreachable_and_a_restart_recovers(ssh_host):
    with ssh_host.executor() as ex:
        assert ex.run(["true"]).ok
        ssh_host.stop()
        with pytest.raises(HostUnreachable, match="refused"):
            ex.run(["true"])

        ssh_host.start()  # a "reboot": same address, port and host key
        assert ex.run(["true"]).ok


def _known_through(held: HeldHost, host, tmp_path) -> str:
    """A known_hosts file naming ``host``'s key at the held port (what a client of it checks)."""
    path = tmp_path / f"known_hosts_{held.port}"
    path.write_text(known_hosts_line(held.address, held.port, host.host_public_key) + "\n")
    return str(path)


def test_silent_host_is_unreachable_after_the_connect_timeout(ssh_host, tmp_path):
    """A host that accepts TCP and says nothing, until the test releases it (then it is a working
    sshd): HostUnreachable must come while it is held. Without the connect timeout on the
    handshake, paramiko waits 15 s for a banner; the watchdog releases the host before that and
    the run then succeeds, failing the test."""
    held = HeldHost(ssh_host.address, ssh_host.port)
    try:
        with ssh_host.executor(port=held.port, connect_timeout=0.5, known_hosts=_known_through(held, ssh_host,
                                                                                              tmp_path)) as ex:
            with pytest.raises(HostUnreachable, match=r"no SSH handshake within 0.5s"):
                call_while_held(lambda: ex.run(["true"]), held.release, watchdog=10,
                                what="HostUnreachable at the 0.5 s connect timeout")
            assert held.connections == 1
            held.release()
            assert ex.run(["true"]).ok, "once the host answers, the same executor reaches it"
    finally:
        held.close()


def test_fleet_reports_each_host_and_returns_at_the_deadline(ssh_host_factory, tmp_path):
    """Two hung hosts, held by the test until run_on_all has returned: one whose command blocks,
    one that never finishes its SSH handshake (its connect timeout, 600 s, is no way out): the
    outcomes came at the 2 s deadline, not when those hosts answered."""
    hosts = [ssh_host_factory() for _ in range(5)]
    ok1, stopped, hung, failing, ok2 = hosts
    stopped.stop()
    held = HeldCommand(tmp_path / "held")
    script = (f'case "$SSH_CONNECTION" in *" {hung.address} "*) {held.shell};; *" {failing.address} "*) exit 4;; esac;'
              " echo up")
    silent = HeldHost(ok1.address, ok1.port)  # a sixth "host"
    executors = [h.executor() for h in hosts] + [
        ok1.executor(port=silent.port, connect_timeout=600, known_hosts=_known_through(silent, ok1, tmp_path))]

    def release() -> None:
        held.release()
        silent.release()

    try:
        result = call_while_held(lambda: run_on_all(executors, ["sh", "-c", script], parallel=2, timeout=2),
                                 release, what="run_on_all returning at its 2 s deadline")
        assert not held.done.exists() and silent.connections == 1
    finally:
        held.release()
        silent.close()
        for ex in executors:
            ex.close()
    assert [o.target for o in result.outcomes] == [ex.target for ex in executors]
    outcome = dict(zip([*hosts, "silent"], result.outcomes))
    assert outcome[ok1].status == outcome[ok2].status == "ok"
    assert outcome[ok1].result.stdout == "up\n"
    assert outcome[failing].status == "failed" and outcome[failing].result.exit_status == 4
    assert outcome[stopped].status == "unreachable" and "refused" in outcome[stopped].error
    for late in (hung, "silent"):
        assert outcome[late].status == "unreachable" and "no answer within 2s" in outcome[late].error
    assert not result.ok


def test_identity_problems_are_one_line_naming_the_file(ssh_host, tmp_path):
    import subprocess

    missing = tmp_path / "no_such_key"
    garbage = tmp_path / "garbage_key"
    garbage.write_text("not a key\n")
    locked = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret-phrase", "-f", str(locked)], check=True)

    for path, expected in ((missing, "does not exist"), (garbage, "is not a private key aep-ops can load"),
                           (locked, "passphrase-protected")):
        with ssh_host.executor(identity=path) as ex, pytest.raises(ExecutionError) as caught:
            ex.run(["true"])
        message = str(caught.value)
        assert expected in message and str(path) in message and "\n" not in message
        assert "s3cret-phrase" not in message


def test_the_identity_is_read_again_when_the_file_changes(ssh_host, tmp_path):
    """Keys are parsed once per process, but a rotated key file is picked up (keyed by version)."""
    import shutil

    identity = tmp_path / "id"
    shutil.copy(ssh_host.identity, identity)
    with ssh_host.executor(identity=identity) as ex:
        assert ex.run(["true"]).ok
    generate_key(tmp_path / "other", comment="not authorised")
    shutil.copy(tmp_path / "other", identity)
    with ssh_host.executor(identity=identity) as ex, pytest.raises(ExecutionError, match="authentication"):
        ex.run(["true"])


def test_a_detached_upgrade_finishes_when_aep_ops_goes_away(ssh_host, tmp_path):
    """aep-ops killed, the connection lost or a deadline passed: the SSH channel closes under the
    package manager, whose next write kills it (SIGPIPE) — a dpkg left half-configured. The
    upgrade step runs it detached (patch_host.detached): it finishes, its output kept on the host."""
    from aep_ops.patch.host import detached

    def upgrade(marker, pidfile):
        return ["sh", "-c", f"echo $$ > {pidfile}; sleep 1; echo Unpacking openssl; echo 'dpkg: warning' >&2;"
                            f" sleep 0.5; touch {marker}"]

    bare, kept, log = tmp_path / "bare-finished", tmp_path / "detached-finished", tmp_path / "upgrade.log"
    bare_pid = tmp_path / "bare.pid"
    with ssh_host.executor() as ex:
        for argv in (upgrade(bare, bare_pid), detached(upgrade(kept, tmp_path / "kept.pid"), str(log))):
            with pytest.raises(CommandTimeout):
                ex.run(argv, timeout=0.3)  # the client leaves before the first write
    wait_until(lambda: log.exists() and log.read_text().endswith("== exit 0\n"), "the detached upgrade finishing")
    assert kept.exists(), "the detached upgrade did not run to its end"
    wait_until(lambda: bare_pid.exists() and bare_pid.read_text().strip(), "the bare upgrade starting")
    wait_until(lambda: not process_alive(int(bare_pid.read_text())), "the bare upgrade ending")
    assert not bare.exists(), "the same command run bare outlived its channel: the hazard this guards against is gone?"
    text = log.read_text()
    assert "Unpacking openssl\ndpkg: warning\n== exit 0\n" in text


def test_a_detached_command_returns_its_status_and_this_attempts_output(ssh_host, tmp_path):
    from aep_ops.patch.host import detached

    log = tmp_path / "upgrade.log"
    with ssh_host.executor() as ex:
        first = ex.run(detached(["sh", "-c", "echo one; echo 'E: broken' >&2; exit 100"], str(log)))
        second = ex.run(detached(["echo", "two"], str(log)))
        missing = ex.run(detached(["echo", "three"], str(tmp_path / "no-such-dir" / "x.log")))

    assert first.exit_status == 100 and first.stdout.splitlines()[-2:] == ["one", "E: broken"]
    assert second.ok and second.stdout.splitlines()[-1] == "two" and "one" not in second.stdout
    assert log.read_text().count("== exit ") == 2
    assert missing.exit_status == 1 and "no-such-dir" in missing.stderr, "no log, no upgrade"


@pytest.fixture
def no_mount_namespaces(tmp_path, monkeypatch):
    """This machine as an unprivileged container sees it: `unshare --mount` fails as it does there,
    and there is a ~/.bashrc to hide (HOME of this process points at one). The probe is cached per
    process, so its answer is cleared before and after."""
    from aep_ops.testing import sshd

    home = tmp_path / "operator-home"
    home.mkdir()
    (home / ".bashrc").write_text("echo operator-rc\n")
    monkeypatch.setenv("HOME", str(home))
    shims = tmp_path / "shims"
    shims.mkdir()
    unshare = shims / "unshare"
    unshare.write_text("#!/bin/sh\necho 'unshare: cannot change root filesystem propagation: Permission denied' >&2\n"
                       "exit 1\n")
    unshare.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}:{os.environ['PATH']}")
    monkeypatch.delenv(sshd.ISOLATION_ENV, raising=False)
    sshd._mount_namespace_works.cache_clear()
    yield sshd
    sshd._mount_namespace_works.cache_clear()


def test_without_mount_namespaces_sessions_get_a_home_of_their_own(no_mount_namespaces, ssh_host_factory):
    """Where `unshare --mount` fails, test hosts still start, and their SSH sessions do not read this
    machine's ~/.bashrc: bash reads $HOME/.bashrc, and HOME is the host's own directory."""
    sshd = no_mount_namespaces
    assert sshd.login_rc_isolation() == "home", "the probe saw unshare fail"

    host = ssh_host_factory()

    assert host.isolation == "home"
    (host.home / ".bashrc").write_text("echo rc-of-the-test-host\n")  # proves which ~/.bashrc bash reads
    with host.executor() as ex:
        result = ex.run_shell('echo "HOME=$HOME"')
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == ["rc-of-the-test-host", f"HOME={host.home}"]


def test_the_home_fallback_can_be_forced_by_environment(ssh_host_factory, monkeypatch):
    from aep_ops.testing import sshd

    monkeypatch.setenv(sshd.ISOLATION_ENV, "home")
    host = ssh_host_factory()
    with host.executor() as ex:
        assert ex.run(["sh", "-c", 'echo "$HOME"']).stdout == f"{host.home}\n"
    monkeypatch.setenv(sshd.ISOLATION_ENV, "chroot")
    with pytest.raises(ValueError, match="AEP_TEST_SSHD_ISOLATION='chroot': expected one of mount, home, none"):
        ssh_host_factory()
