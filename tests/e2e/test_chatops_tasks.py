"""``chatops.serve`` refuses what it cannot serve safely before it listens (exit 2, one line, no
secret in it), and ``chatops.unit`` prints a unit that systemd itself verifies."""

from __future__ import annotations

import pytest

from tests.conftest import write_config

GOOD = """chatops:
  signing_secret: env:CHAT_TEST_SIGNING_SECRET
  bot_token: env:CHAT_TEST_BOT_TOKEN
  listen: 127.0.0.1:0
"""
SECRETS = "CHAT_TEST_SIGNING_SECRET=s3cr3t-signing-value\nCHAT_TEST_BOT_TOKEN=xoxb-s3cr3t-token-value\n"


def env_file(tmp_path, text=SECRETS, mode=0o600):
    path = tmp_path / "chatops.env"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize("config, env_text, mode, says", [
    ("", SECRETS, 0o600, "chatops.signing_secret is not set: set it to a secret reference"),
    (GOOD.replace("127.0.0.1:0", "nowhere"), SECRETS, 0o600, "chatops.listen 'nowhere': expected HOST:PORT"),
    (GOOD + "  command: ops\n", SECRETS, 0o600, "chatops.command 'ops': a slash command, e.g. /ops"),
    (GOOD, SECRETS, 0o644, "other users can read it and it holds secrets; chmod 600"),
    (GOOD, "CHAT_TEST_SIGNING_SECRET s3cr3t-signing-value\n", 0o600, "line 1 is not NAME=VALUE"),
    (GOOD + "environments:\n  prod:\n    chatops: {roles: {admin: [alice]}}\n", SECRETS, 0o600,
     "environments.prod.chatops.roles.admin: 'alice' is not TEAM_ID/USER_ID"),
])
def test_serve_refuses_before_listening(cli, tmp_path, monkeypatch, config, env_text, mode, says):
    write_config(tmp_path / "aep-ops.yaml", config, monkeypatch)
    done = cli("chatops.serve", "--env-file", env_file(tmp_path, env_text, mode), tool="aep-ops", timeout=60)
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "s3cr3t" not in done.stderr + done.stdout and "listening" not in done.stdout


@pytest.mark.parametrize("flag, says", [
    ("", "--env-file is empty"), ("/nonexistent/chatops.env", "cannot read it (No such file or directory)"),
])
def test_serve_names_a_bad_env_file(cli, tmp_path, monkeypatch, flag, says):
    write_config(tmp_path / "aep-ops.yaml", GOOD, monkeypatch)
    done = cli("chatops.serve", "--env-file", flag, tool="aep-ops", timeout=60)
    assert done.returncode == 2 and says in done.stderr, done.stderr


def test_unit_is_verified_by_systemd(cli):
    done = cli("chatops.unit", "--env-file", "/etc/aep-ops/chatops.env", "--user", "aep-ops", check_rc=0)
    unit = done.stdout
    assert "ExecStart=" in unit and '"chatops.serve" "--env-file" "/etc/aep-ops/chatops.env"' in unit
    for line in ("Type=simple", "Restart=on-failure", "KillMode=mixed", "User=aep-ops", "NoNewPrivileges=yes",
                 "WantedBy=multi-user.target"):
        assert line in unit.splitlines(), line
    exposure = float(done.stderr.split("exposure ")[1].split(";")[0])
    assert exposure <= 4.0, done.stderr


@pytest.mark.parametrize("args, says", [
    (["--env-file", "chatops.env"], "cannot go into a unit file as it is: use an absolute path"),
    (["--user", "root; rm -rf /"], "is not a user name"),
])
def test_unit_refuses_what_cannot_go_into_it(cli, args, says):
    done = cli("chatops.unit", *args, check_rc=2)
    assert says in done.stderr
