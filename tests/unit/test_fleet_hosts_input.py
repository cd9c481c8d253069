"""The one host parser behind --host, --hosts and the inventory (aep_ops.fleet.inventory): nothing
that begins with "-" reaches ssh-keyscan, ssh-keygen or ssh as an option, no name holds
whitespace or a control character, and a flag given but blank never means "every host"."""

from __future__ import annotations

import pytest

from aep_ops import config
from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.fleet.inventory import EMPTY_HOSTS, EMPTY_ROLE, hosts_flag, hosts_for, parse_host_spec, role_flag
from tests.conftest import write_config

FLEET = """
environments:
  fleet:
    production: false
    backend: local
    ssh: {user: deploy}
    hosts:
      - {name: api1, address: 10.0.1.11, role: api}
      - {name: api2, address: 10.0.1.12, role: api}
"""


@pytest.fixture
def settings(tmp_path, monkeypatch):
    write_config(tmp_path / "c.yaml", FLEET, monkeypatch)
    return config.load("fleet")


@pytest.mark.parametrize("spec", ["-fFILE", "-oProxyCommand=touch /tmp/x", " -p22", "-@10.0.0.1",
                                  "admin@-oProxyCommand=x", "-admin@10.0.0.1", "[-1]:22"])
def test_nothing_beginning_with_a_dash_is_a_host(spec):
    with pytest.raises(UsageError) as err:
        parse_host_spec(spec)
    message = str(err.value)
    assert message.startswith(f"--hosts entry {spec!r}"), message
    assert "\n" not in message


@pytest.mark.parametrize("spec", ["a b", "web\t1", "web\x07", "web\x1b[2J", "a,b", ",", "host;id", "$(id)",
                                  "`id`", "user name@host", "ad min@10.0.0.1", "h\n-oProxyCommand=x"])
def test_whitespace_control_and_shell_characters_are_refused(spec):
    with pytest.raises(UsageError, match="--hosts entry") as err:
        parse_host_spec(spec)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value), "the value is shown escaped, on one line"


@pytest.mark.parametrize("spec", ["web-1.internal", "ip-10-0-1-5", "deploy@10.0.0.5:2222", "svc.user@host_a",
                                  "[fd00::5]:22", "u@[::1]"])
def test_ordinary_names_still_parse(spec):
    assert parse_host_spec(spec).address


def test_fleet_trust_names_its_own_flag(settings):
    with pytest.raises(UsageError, match=r"^--host '-fFILE' begins with '-'"):
        hosts_for(settings, override=["-fFILE"], flag="--host")


@pytest.mark.parametrize("value", ["", ",", " , ", " ", ",,,"])
def test_hosts_given_but_blank_is_refused_absent_is_the_inventory(value, settings):
    with pytest.raises(UsageError) as err:
        hosts_flag(value)
    assert str(err.value) == EMPTY_HOSTS == ("--hosts is empty: name at least one host, or leave the flag out to"
                                             " use the inventory")
    assert hosts_flag(None) is None
    assert [h.name for h in hosts_for(settings, override=hosts_flag(None))] == ["api1", "api2"]
    assert hosts_flag(" api1 , ,api2") == ["api1", "api2"]


def test_an_empty_override_list_is_not_every_host(settings):
    """Callers other than the CLI (chat-ops, other runbooks) get the same answer."""
    with pytest.raises(UsageError, match=f"^{EMPTY_HOSTS}$"):
        hosts_for(settings, override=[])
    with pytest.raises(UsageError, match=f"^{EMPTY_HOSTS}$"):
        hosts_for(settings, override=["", "  "])


@pytest.mark.parametrize("value", ["", " ", "\t"])
def test_role_given_but_blank_is_refused(value, settings):
    with pytest.raises(UsageError) as err:
        role_flag(value)
    assert str(err.value) == EMPTY_ROLE
    with pytest.raises(UsageError, match=f"^{EMPTY_ROLE}$"):
        hosts_for(settings, role=value)
    assert role_flag(None) is None and role_flag(" api ") == "api"


@pytest.mark.parametrize("entry, message", [
    ("{name: '-fFILE', address: 10.0.0.1}", r"^environments\.bad\.hosts\[1\]\.name '-fFILE' begins with '-'"),
    ("{name: 'web 2', address: 10.0.0.1}", r"^environments\.bad\.hosts\[1\]\.name 'web 2' contains whitespace"),
    ("{name: \"web\\x072\", address: 10.0.0.1}", r"^environments\.bad\.hosts\[1\]\.name 'web\\x072' contains"),
    ("{name: 'a,b', address: 10.0.0.1}", r"^environments\.bad\.hosts\[1\]\.name 'a,b' contains ','"),
    ("{name: web2, address: '-oProxyCommand=id'}",
     r"^environments\.bad\.hosts\[1\]\.address '-oProxyCommand=id' begins with '-'"),
    ("{name: web2, address: 'host;id'}", r"^environments\.bad\.hosts\[1\]\.address 'host;id' is not a DNS name"),
    ("{name: web2, address: 10.0.0.2, user: '-lroot'}", r"^environments\.bad\.hosts\[1\]\.user '-lroot' begins"),
])
def test_inventory_entries_are_checked_by_the_same_rule(entry, message, tmp_path, monkeypatch):
    write_config(tmp_path / "bad.yaml", "environments: {bad: {production: false, backend: local, hosts: ["
                 f"{{name: web1, address: 10.0.0.9}}, {entry}]}}}}\n", monkeypatch)
    with pytest.raises(ConfigError, match=message):
        hosts_for(config.load("bad"))


def test_a_default_user_beginning_with_a_dash_is_refused(tmp_path, monkeypatch):
    write_config(tmp_path / "u.yaml", "environments: {bad: {production: false, backend: local,"
                 " ssh: {user: '-oProxyCommand=id'}, hosts: [{name: web1, address: 10.0.0.9}]}}\n", monkeypatch)
    with pytest.raises(ConfigError, match=r"^environments\.bad\.ssh\.user '-oProxyCommand=id' begins with '-'"):
        hosts_for(config.load("bad"))
    with pytest.raises(ConfigError, match=r"ssh\.user"):
        hosts_for(config.load("bad"), override=["10.0.0.1"])  # an ad-hoc address would log in as that user
