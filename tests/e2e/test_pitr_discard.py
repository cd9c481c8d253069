"""pitr.discard through the CLI: it removes only what aep-ops restored, and a second run changes nothing."""

from __future__ import annotations

from tests.support.pitr_source import target_between


def test_discard_removes_only_what_aep_ops_made(cli, source, local_env):
    target = target_between(source, ["a"], ["b"])[0].isoformat()
    cli("pitr.restore", "--target-time", target, "--name", "scratch", check_rc=0, timeout=300)
    assert "scratch" in cli("pitr.list", check_rc=0).stdout
    cli("pitr.discard", "--name", "scratch", check_rc=0)
    assert not (local_env / "pg" / "restores" / "scratch").exists()
    assert "unchanged" in cli("pitr.discard", "--name", "scratch", check_rc=0).stdout
    foreign = local_env / "pg" / "restores" / "not-ours"
    foreign.mkdir(parents=True)
    refused = cli("pitr.discard", "--name", "not-ours")
    assert refused.returncode == 2 and "not created by aep-ops" in refused.stderr and foreign.exists()
