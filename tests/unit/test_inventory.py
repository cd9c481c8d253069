"""Inventory: hosts from config, --hosts overrides, EC2 tag discovery (moto server), SSH settings."""

from __future__ import annotations

import uuid

import pytest

from aep_ops import config
from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.fleet.inventory import DEFAULT_PARALLEL, Host, executor_for, hosts_for, parallel_for, parse_host_spec
from aep_ops.testing.sshd import generate_key
from tests.conftest import write_config

FLEET = """
environments:
  fleet:
    production: false
    backend: local
    ssh: {user: deploy, identity: IDENTITY, known_hosts: KNOWN, connect_timeout: 4, command_timeout: 30}
    hosts:
      - {name: api1, address: 10.0.1.11, role: api, instance_id: i-0001, health_url: "http://10.0.1.11:3000/health"}
      - {name: api2, address: 10.0.1.12, port: 2200, user: admin, role: api}
      - {name: worker1, address: 10.0.2.21, role: worker}
  empty:
    production: false
    backend: local
"""


@pytest.fixture
def settings(tmp_path, monkeypatch):
    known = tmp_path / "known_hosts"
    known.write_text("")
    generate_key(tmp_path / "id_ed25519")
    write_config(tmp_path / "c.yaml", FLEET.replace("KNOWN", str(known)).replace("IDENTITY", str(tmp_path / "id_ed25519")),
                 monkeypatch)
    return config.load("fleet")


def test_config_hosts_in_order_with_defaults_from_ssh_section(settings):
    hosts = hosts_for(settings)
    assert [h.name for h in hosts] == ["api1", "api2", "worker1"]
    assert hosts[0] == Host("api1", "10.0.1.11", 22, "deploy", "api", "i-0001", "http://10.0.1.11:3000/health")
    assert (hosts[1].port, hosts[1].user, hosts[1].target) == (2200, "admin", "admin@10.0.1.12:2200")


def test_role_filters_and_unknown_role_names_the_roles_present(settings):
    assert [h.name for h in hosts_for(settings, role="worker")] == ["worker1"]
    with pytest.raises(UsageError, match=r"role 'db'.*roles present: api, worker"):
        hosts_for(settings, role="db")


def test_empty_inventory_says_how_to_fix_it(tmp_path, monkeypatch, settings):
    with pytest.raises(UsageError, match=r"environments\.empty\.hosts is empty.*--hosts"):
        hosts_for(config.load("empty"))


@pytest.mark.parametrize("spec, expected", [
    ("10.0.0.5", Host("10.0.0.5", "10.0.0.5", 22, "root")),
    ("admin@10.0.0.5:2222", Host("10.0.0.5:2222", "10.0.0.5", 2222, "admin")),
    ("web.internal:22", Host("web.internal", "web.internal", 22, "root")),
    ("[fd00::5]:2222", Host("[fd00::5]:2222", "fd00::5", 2222, "root")),
    ("u@[fd00::5]", Host("fd00::5", "fd00::5", 22, "u")),
])
def test_host_specs(spec, expected):
    assert parse_host_spec(spec) == expected


@pytest.mark.parametrize("spec", ["a@b@c", "host:port", "host:70000", "", "a b"])
def test_bad_host_specs_are_usage_errors(spec):
    with pytest.raises(UsageError, match="--hosts entry"):
        parse_host_spec(spec)


def test_override_mixes_inventory_names_and_addresses_and_ignores_role(settings):
    hosts = hosts_for(settings, role="worker", override=["api2", "10.9.9.9:2222", "api2"])
    assert hosts[0].name == "api2" and hosts[0].user == "admin", "an inventory name keeps its entry"
    assert hosts[1] == Host("10.9.9.9:2222", "10.9.9.9", 2222, "deploy"), "ssh.user is the default user"
    assert len(hosts) == 2, "a host named twice runs once"


def test_duplicate_inventory_names_are_refused(tmp_path, monkeypatch):
    write_config(tmp_path / "d.yaml", "environments: {dup: {production: false, backend: local, hosts: ["
                 "{name: a, address: 10.0.0.1}, {name: a, address: 10.0.0.2}]}}\n", monkeypatch)
    with pytest.raises(ConfigError, match="duplicate name"):
        hosts_for(config.load("dup"))


def test_executor_takes_ssh_settings_and_flags_win(settings, tmp_path):
    host = hosts_for(settings)[1]
    ex = executor_for(settings, host)
    assert (ex.host, ex.port, ex.user, ex.identity) == ("10.0.1.12", 2200, "admin", str(tmp_path / "id_ed25519"))
    assert (ex.connect_timeout, ex.command_timeout) == (4, 30)
    other = tmp_path / "other_known"
    other.write_text("")
    generate_key(tmp_path / "k2")
    ex = executor_for(settings, host, identity=str(tmp_path / "k2"), known_hosts=str(other))
    assert (ex.identity, ex.known_hosts) == (str(tmp_path / "k2"), str(other))


def test_missing_known_hosts_names_the_key_and_fleet_trust(tmp_path, monkeypatch):
    write_config(tmp_path / "n.yaml", "environments: {bare: {production: false, backend: local, "
                 "ssh: {identity: /k}, hosts: [{name: a, address: 10.0.0.1, port: 2222}]}}\n", monkeypatch)
    settings = config.load("bare")
    fix = r"environments\.bare\.ssh\.known_hosts.*inv fleet\.trust 10\.0\.0\.1 --port 2222"
    with pytest.raises(ConfigError, match=fix):
        executor_for(settings, hosts_for(settings)[0])
    with pytest.raises(ConfigError, match=r"does not exist.*inv fleet\.trust"):
        executor_for(settings, hosts_for(settings)[0], known_hosts=str(tmp_path / "nope"))


def test_parallelism_is_the_flag_else_inventory_parallel_else_ten(tmp_path, monkeypatch):
    """One default for fleet.run, fleet.facts and patch.rolling's probes."""
    write_config(tmp_path / "p.yaml", "environments: {plain: {production: false, backend: local},"
                 " tuned: {production: false, backend: local, inventory: {parallel: 3}}}\n", monkeypatch)
    assert parallel_for(config.load("plain")) == DEFAULT_PARALLEL == 10
    assert parallel_for(config.load("tuned")) == 3 and parallel_for(config.load("tuned"), 7) == 7
    with pytest.raises(UsageError, match=r"^--parallel must be at least 1, not -2$"):
        parallel_for(config.load("plain"), -2)
    write_config(tmp_path / "b.yaml", "environments: {broken: {production: false, backend: local,"
                 " inventory: {parallel: -1}}}\n", monkeypatch)
    with pytest.raises(UsageError, match=r"environments\.broken\.inventory\.parallel"):  # at load, or here
        parallel_for(config.load("broken"))


# -- EC2 discovery against the moto server ------------------------------------------------------


@pytest.fixture
def ec2_settings(tmp_path, monkeypatch, moto_account):
    """An environment whose hosts come from EC2, in this test's own moto account (nothing another
    test tagged is seen); its name is unique, and so is the tag value the hosts carry."""
    env = f"ec2{uuid.uuid4().hex[:8]}"
    for name, value in moto_account.environ.items():
        monkeypatch.setenv(name, value)
    write_config(tmp_path / "e.yaml", f"""
environments:
  {env}:
    production: false
    backend: local
    aws: {{region: {moto_account.region}, endpoint_url: "{moto_account.endpoint_url}"}}
    ssh: {{user: ubuntu}}
    inventory: {{source: ec2}}
""", monkeypatch)
    ec2 = moto_account.client("ec2")
    image = "ami-12345678"  # moto accepts any AMI id; describe_images would cost seconds

    def launch(role, *, env_tag=env, name=None, state="running"):
        tags = [{"Key": "aep:env", "Value": env_tag}, {"Key": "aep:role", "Value": role}]
        if name:
            tags.append({"Key": "Name", "Value": name})
        inst = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"][0]
        if state == "stopped":
            ec2.stop_instances(InstanceIds=[inst["InstanceId"]])
        return inst

    api = [launch("api", name="api-a"), launch("api", name="api-b")]
    worker = launch("worker")
    launch("api", env_tag="other-env", name="api-elsewhere")
    launch("api", name="api-stopped", state="stopped")
    return config.load(env), api, worker


def test_ec2_discovery_by_env_and_role_tags_running_only(ec2_settings, monkeypatch):
    settings, api, worker = ec2_settings
    calls = _count_describe_calls(monkeypatch)

    hosts = hosts_for(settings, role="api")

    assert [h.name for h in hosts] == ["api-a", "api-b"]
    assert [h.instance_id for h in hosts] == [i["InstanceId"] for i in api]
    assert [h.address for h in hosts] == [i["PrivateIpAddress"] for i in api]
    assert {(h.role, h.user, h.port) for h in hosts} == {("api", "ubuntu", 22)}
    assert calls == ["DescribeInstances"], "the fleet is discovered once per call"
    everything = hosts_for(settings)
    assert worker["InstanceId"] in {h.instance_id for h in everything}
    assert next(h for h in everything if h.instance_id == worker["InstanceId"]).name == worker["InstanceId"]
    assert "api-stopped" not in {h.name for h in everything}


def test_ec2_unknown_role_lists_the_tagged_roles(ec2_settings):
    settings, _, _ = ec2_settings
    with pytest.raises(UsageError, match=r"tagged aep:role=db.*roles present: api, worker"):
        hosts_for(settings, role="db")


def test_ec2_empty_environment_is_a_usage_error(tmp_path, monkeypatch, moto_account):
    for name, value in moto_account.environ.items():
        monkeypatch.setenv(name, value)
    write_config(tmp_path / "x.yaml", "environments: {nobody: {production: false, backend: local, "
                 f"aws: {{region: {moto_account.region}, endpoint_url: '{moto_account.endpoint_url}'}}, "
                 "inventory: {source: ec2}}}\n", monkeypatch)
    with pytest.raises(UsageError, match=r"no running EC2 instance is tagged aep:env=nobody"):
        hosts_for(config.load("nobody"))


def _count_describe_calls(monkeypatch) -> list[str]:
    """Record every EC2 API call made through aep_ops' client factory."""
    from aep_ops.aws import clients

    calls: list[str] = []
    real = clients.client

    def counting(source, service, **kw):
        c = real(source, service, **kw)
        c.meta.events.register("before-call.ec2.*", lambda model, **_: calls.append(model.name))
        return c

    monkeypatch.setattr(clients, "client", counting)
    return calls
