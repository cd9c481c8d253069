"""The whole cutover contract through the CLI, both ways, on real PostgreSQL 15 and pgBackRest:
restore -> cutover -> db.url shows the copy -> a row written on the new primary -> backup.run
backs it up (pgBackRest lists the backup in the new primary's stanza; a restore from it holds
the row) -> dr.drill passes on the new primary -> cut back -> db.url shows the original -> the
former copy can be discarded. The audit log says from -> to for both directions."""

from __future__ import annotations

import json
import subprocess

import psycopg

from aep_ops import config
from aep_ops.db import locations
from tests.support.pitr_source import labels, target_between, write_rows


def pgbackrest_info(state, config_name: str, stanza: str) -> list[dict]:
    """What pgBackRest itself says about a stanza (not what aep-ops says)."""
    out = subprocess.run(["runuser", "-u", "postgres", "--", "pgbackrest", f"--config={state}/pgbackrest/{config_name}",
                          f"--stanza={stanza}", "info", "--output=json"], capture_output=True, text=True, check=True)
    [entry] = json.loads(out.stdout)
    return entry["backup"]


def audit_cutovers(state) -> list[tuple[str, str, str, str]]:
    lines = (state / "logs" / "audit.jsonl").read_text().splitlines()
    return [(r["action"], r["args"]["from"], r["args"]["to"], r["result"]) for r in map(json.loads, lines)
            if r["action"].startswith("pitr.cutover:")]


def test_restore_cutover_write_backup_drill_on_the_new_primary_then_cut_back(cli, source, local_env):
    original_dsn = source.dsn()
    target, _ = target_between(source, ["early"], ["late"])
    cli("pitr.restore", "--target-time", target.isoformat(), "--name", "newprim", check_rc=0, timeout=300)

    cut = json.loads(cli("pitr.cutover", "newprim", "--json", check_rc=0, timeout=300).stdout)
    assert [s["status"] for s in cut["steps"]] == ["changed", "changed", "changed", "unchanged"], cut["steps"]
    copy_dsn = cli("db.url", check_rc=0).stdout.strip()
    copy = locations.restored_copy(config.load("local"), "newprim")
    assert copy_dsn == copy.meta["dsn"] and f"port={copy.meta['port']}" in copy_dsn and copy_dsn != original_dsn
    listing = cli("pitr.list", check_rc=0).stdout
    assert any(ln.startswith("newprim ") and ln.endswith("(active)") for ln in listing.splitlines()), listing
    assert "aep-source" in listing and "the application uses newprim" in listing
    # archiving is on for the new primary, into its own stanza, with a full backup taken right away
    first = pgbackrest_info(local_env, "pgbackrest-newprim.conf", "aep-newprim")
    assert [b["type"] for b in first] == ["full"]
    with psycopg.connect(copy_dsn) as conn:
        assert conn.execute("show archive_mode").fetchone()[0] == "on"

    # the application writes on the new primary; backup.run backs up the new primary
    primary = type("NewPrimary", (), {"dsn": lambda self: copy_dsn})()  # what tests.support.pitr_source writes to
    write_rows(primary, ["after-cutover"])
    assert "early" in labels(copy_dsn) and "late" not in labels(copy_dsn)
    backup = json.loads(cli("backup.run", "--json", check_rc=0, timeout=300).stdout)["outputs"]["run_backup"]
    infos = pgbackrest_info(local_env, "pgbackrest-newprim.conf", "aep-newprim")
    assert backup["label"] in [b["label"] for b in infos] and len(infos) == 2
    assert "after-cutover" not in labels(original_dsn), "the original is left as it was"
    setup = json.loads(cli("backup.setup", "--json", check_rc=0, timeout=300).stdout)
    assert setup["outputs"]["ensure_stanza"]["stanza"] == "aep-newprim"
    cli("backup.check", check_rc=0, timeout=120)
    verify = json.loads(cli("backup.verify", "--json", check_rc=0, timeout=300).stdout)
    continuity = verify["outputs"]["wal_continuity"]["repos"]["repo1"]
    assert int(continuity["from"][:8], 16) >= 2, "verified the new primary's WAL (its timeline), not timeline 1"

    # the row is in the new primary's backups: a point-in-time restore from them holds it
    proof_target, _ = target_between(primary, ["proof-before"], ["proof-after"])
    proof = json.loads(cli("pitr.restore", "--target-time", proof_target.isoformat(), "--name", "proof", "--json",
                           check_rc=0, timeout=300).stdout)
    restored = labels(proof["dsn"])
    assert {"early", "after-cutover", "proof-before"} <= restored and not {"late", "proof-after"} & restored
    cli("pitr.discard", "proof", check_rc=0)

    drill = cli("dr.drill", "--json", timeout=400)
    assert drill.returncode == 0, drill.stderr[-2000:]
    report = json.loads(drill.stdout)
    assert report["result"] == "passed"
    assert report["backup_label"] in [b["label"] for b in pgbackrest_info(local_env, "pgbackrest-newprim.conf",
                                                                          "aep-newprim")]

    refused = cli("pitr.discard", "newprim")
    assert refused.returncode == 2 and "the application uses" in refused.stderr
    assert "pitr.cutover aep-source" in refused.stderr.strip().splitlines()[-1]

    back = json.loads(cli("pitr.cutover", "aep-source", "--json", check_rc=0, timeout=300).stdout)
    statuses = {s["step_id"]: s["status"] for s in back["steps"]}
    assert statuses["ensure_cutover"] == "changed" and statuses["ensure_archiving"] == "unchanged", statuses
    assert cli("db.url", check_rc=0).stdout.strip() == original_dsn
    listing = cli("pitr.list", check_rc=0).stdout
    assert "aep-source                         source  (active)" in listing, listing
    assert "(was cut over to)" in listing
    assert json.loads((local_env / "pg" / "active.json").read_text())["previous_name"] == "newprim"

    cli("pitr.discard", "newprim", check_rc=0)
    assert not (local_env / "pg" / "restores" / "newprim").exists()
    refused = cli("pitr.discard", "aep-source")
    assert refused.returncode == 2 and "original source" in refused.stderr and source.cluster.exists()

    moves = {(frm, to) for action, frm, to, result in audit_cutovers(local_env) if action.endswith(":ensure_cutover")
             and result == "changed"}
    assert moves == {("aep-source", "newprim"), ("newprim", "aep-source")}
