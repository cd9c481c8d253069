"""pitr.cutover through the CLI: the application's pointer moves to a verified copy, once."""

from __future__ import annotations

import json
from datetime import timezone

from aep_ops import config
from aep_ops.db import locations
from tests.support.pitr_source import target_between


def test_cutover_points_the_application_at_the_copy_once_and_protects_it(cli, source):
    target, _ = target_between(source, ["early"], ["late"])
    cli("pitr.restore", "--target-time", target.astimezone(timezone.utc).isoformat(), "--name", "exact",
        check_rc=0, timeout=300)
    cut = cli("pitr.cutover", "--name", "exact", check_rc=0)
    assert "changed" in cut.stdout
    again = json.loads(cli("pitr.cutover", "--name", "exact", "--json", check_rc=0).stdout)
    assert {s["status"] for s in again["steps"]} == {"unchanged"}, "a second cutover changes nothing"
    refused = cli("pitr.discard", "--name", "exact")
    assert refused.returncode == 2 and "cut over" in refused.stderr
    pointer = json.loads((locations.pg_root(config.load("local")) / "active.json").read_text())
    assert pointer["name"] == "exact" and pointer["previous"] == source.dsn()
