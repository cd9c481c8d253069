"""``timers.remove``: every unit of the environment disabled and deleted, nothing else; twice is
the same as once; production needs --yes (systemctl offline with --root: no systemd as PID 1 here)."""

from __future__ import annotations

import json

from tests.conftest import write_config


def _units(tmp_path, monkeypatch):
    units = tmp_path / "root" / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    write_config(tmp_path / "aep-ops.yaml", f"timers:\n  unit_dir: {units}\n", monkeypatch)
    return units


def test_remove_disables_and_deletes_only_this_environment_s_units_and_twice_is_once(cli, tmp_path, monkeypatch):
    units = _units(tmp_path, monkeypatch)
    cli("timers.install", "--env", "staging", check_rc=0)
    cli("timers.install", "--env", "dev", check_rc=0)
    out = cli("timers.remove", "--env", "staging", "--json", check_rc=0)
    assert [s["status"] for s in json.loads(out.stdout)["steps"]] == ["changed", "changed"]
    assert not list(units.glob("aep-ops-staging-*"))
    wants = {p.name for p in (units / "timers.target.wants").iterdir()}
    assert wants and all(name.startswith("aep-ops-dev-") for name in wants)
    again = cli("timers.remove", "--env", "staging", "--json", check_rc=0)
    assert [s["status"] for s in json.loads(again.stdout)["steps"]] == ["unchanged", "unchanged"]
    assert len(list(units.glob("aep-ops-dev-*.timer"))) == 11


def test_production_removal_needs_yes(cli, tmp_path, monkeypatch):
    units = _units(tmp_path, monkeypatch)
    cli("timers.install", "--env", "prod", "--yes", check_rc=0)
    refused = cli("timers.remove", "--env", "prod", check_rc=4)
    assert "--yes" in refused.stderr and len(list(units.glob("aep-ops-prod-*.timer"))) == 11
    cli("timers.remove", "--env", "prod", "--yes", check_rc=0)
    assert not list(units.glob("aep-ops-prod-*"))
