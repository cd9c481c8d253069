"""logs.rotate's rules that need no host: sources from kinds, the rendered logrotate file (accepted
by the real `logrotate -d`), and configuration mistakes refused with the key named."""

from __future__ import annotations

import subprocess
from types import SimpleNamespace

import pytest

from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.logs.render import DATEFORMAT, render
from aep_ops.logs.rotate import parse
from aep_ops.logs.settings import logs_settings, sources


def settings(tmp_path, logs=None, production=False):
    return SimpleNamespace(state_dir=tmp_path, env_name="staging", production=production, env={"logs": logs or {}})


API = {"name": "api", "kind": "node-api", "role": "api", "paths": ["/var/log/aep/{host}/api.log"],
       "pidfile": "/run/aep-api.pid"}


def test_defaults_are_this_machines_aep_ops_log_and_audit_log(tmp_path):
    found = sources(settings(tmp_path))
    assert [(s.name, s.role, s.klass, s.delay_compress) for s in found] == [
        ("aep-ops", "local", "app", True), ("audit", "local", "audit", True)]
    assert found[1].paths == (f"{tmp_path}/logs/audit.jsonl",)
    assert logs_settings(settings(tmp_path))["retention_days"] == 30
    assert logs_settings(settings(tmp_path, production=True))["retention_days"] == 90


def test_node_api_reopens_on_usr2_and_postgresql_copies(tmp_path):
    api, pg = sources(settings(tmp_path, {"sources": [API, {"name": "pg", "kind": "postgresql", "role": "db",
                                                           "paths": ["/var/log/postgresql/pg.log"]}]}))
    assert (api.method, api.signal, api.pidfile) == ("create", "USR2", "/run/aep-api.pid")
    assert (pg.method, pg.signal) == ("copytruncate", None)


def test_the_rendering_is_accepted_by_logrotate_and_never_collides_within_a_day(tmp_path):
    chosen = sources(settings(tmp_path, {"sources": [
        API, {"name": "pg", "kind": "postgresql", "role": "api", "paths": ["/var/log/pg/{host}.log"], "size": "100M"},
        {"name": "web", "kind": "nginx", "role": "api", "paths": ["/var/log/nginx/*.log"], "schedule": "hourly",
         "size": "50M", "su": "root adm"}]}))
    text = render("staging", "api-1", chosen)
    assert '"/var/log/aep/api-1/api.log" {' in text and '"/var/log/pg/api-1.log" {' in text
    assert text.count(f"dateformat {DATEFORMAT}") == 3 and "%s" in DATEFORMAT
    assert "kill -USR2" in text and "/run/aep-api.pid" in text and "kill -USR1" in text
    assert "    copytruncate" in text and "    size 100M" in text and "    hourly\n    maxsize 50M" in text
    config = tmp_path / "logrotate.conf"
    config.write_text(text)
    done = subprocess.run(["logrotate", "-d", "-s", str(tmp_path / "logrotate.status"), "--", str(config)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "error:" not in done.stderr


@pytest.mark.parametrize("entry, words", [
    ({"name": "api", "kind": "node-api", "role": "api", "paths": ["/x/api.log"]}, "needs pidfile"),
    ({"name": "a b", "kind": "plain", "role": "api", "paths": ["/x/a.log"]}, "letters, digits"),
    ({"name": "a", "kind": "plain", "role": "api", "paths": ['/x/a".log']}, "quote"),
    ({"name": "a", "kind": "plain", "role": "api", "paths": ["/x/a.log"], "size": "lots"}, "a size like"),
    ({"name": "a", "kind": "plain", "role": "api", "paths": ["/x/a.log"], "signal": "NOPE"}, "not a signal"),
    ({"name": "a", "kind": "plain", "paths": ["/x/a.log"]}, "role is not set"),
])
def test_configuration_mistakes_name_the_key(tmp_path, entry, words):
    with pytest.raises(ConfigError, match=words):
        sources(settings(tmp_path, {"sources": [entry]}))


def test_a_role_without_sources_is_refused_never_nothing(tmp_path):
    with pytest.raises(UsageError, match="no log source .* has that role"):
        sources(settings(tmp_path, {"sources": [API]}), role="web")


def test_kms_without_a_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="kms_key_id"):
        logs_settings(settings(tmp_path, {"sse": "aws:kms"}))


def test_the_stamped_output_gives_rotations_and_the_copytruncate_window():
    out = parse("h1", "\n".join([
        "100.000 rotating pattern: /l/app.log",
        "100.010 renaming /l/app.log to /l/app.log-20261207-1796653244",
        "100.020 copying /l/pg.log to /l/pg.log-20261207-1796653244",
        "100.0254 truncating /l/pg.log",
        "100.030 error: failed to rename /l/x.log",
        "100.040 aep-ops-exit 1"]))
    assert [r["file"] for r in out.rotated] == ["/l/app.log", "/l/pg.log"]
    assert out.loss_windows == [{"file": "/l/pg.log", "window_ms": 5.4}]
    assert out.errors == ["error: failed to rename /l/x.log"] and out.exit_status == 1


def test_size_alone_rotates_by_size_and_with_a_schedule_caps_it(tmp_path):
    def first_rule(**entry):
        source = sources(settings(tmp_path, {"sources": [{**API, **entry}]}))[0]
        return render("staging", "api-1", [source]).split(" {\n", 1)[1].splitlines()[:2]

    assert first_rule(size="100M")[0] == "    size 100M"
    assert first_rule(size="100M", schedule="daily") == ["    daily", "    maxsize 100M"]
    assert first_rule()[0] == "    daily"
