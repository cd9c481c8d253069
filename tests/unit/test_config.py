"""Layered configuration: precedence, schema errors that name key and file, secrets as references."""

from __future__ import annotations

import pytest

from aep_ops import config
from aep_ops.base.errors import ConfigError, UsageError
from aep_ops.base.secrets import SecretRef
from tests.conftest import write_config


def test_defaults_give_four_environments_and_local_by_default():
    settings = config.load()
    assert settings.env_name == "local"
    assert {"local", "dev", "staging", "prod"} <= set(settings.data["environments"])
    assert settings.get("environments.prod.production") is True
    assert settings.get("environments.local.objectives.rpo_seconds") == 900


def test_precedence_file_then_env_var_then_flag(tmp_path, monkeypatch):
    write_config(tmp_path / "c.yaml", "log: {level: warning}\nenvironments: {prod: {ssh: {connect_timeout: 7}}}\n",
                 monkeypatch)
    settings = config.load("prod")
    assert settings.get("log.level") == "warning"
    assert settings.sources["log.level"] == str(tmp_path / "c.yaml")
    monkeypatch.setenv("AEP_OPS_LOG__LEVEL", "error")
    monkeypatch.setenv("AEP_OPS_ENVIRONMENTS__PROD__SSH__CONNECT_TIMEOUT", "9")
    settings = config.load("prod")
    assert settings.get("log.level") == "error"
    assert settings.get("environments.prod.ssh.connect_timeout") == 9, "env var values are typed"
    settings = config.load("prod", ["log.level=debug"])
    assert settings.get("log.level") == "debug"
    assert settings.sources["log.level"] == "--set log.level"


def test_repo_file_is_a_layer_below_the_explicit_file(tmp_path, monkeypatch):
    assert config.load("staging").get("environments.staging.aws.region") == "eu-west-1"  # from repo aep-ops.yaml
    write_config(tmp_path / "c.yaml", "environments: {staging: {aws: {region: us-east-2}}}\n", monkeypatch)
    assert config.load("staging").get("environments.staging.aws.region") == "us-east-2"


@pytest.mark.parametrize("text, message", [
    ("colour: blue\n", "unknown key 'colour'"),
    ("environments: {prod: {ssh: {conect_timeout: 3}}}\n", "unknown key 'environments.prod.ssh.conect_timeout'"),
    ("environments: {prod: {ssh: {connect_timeout: soon}}}\n",
     "'environments.prod.ssh.connect_timeout' must be an integer, got a string 'soon'"),
    ("environments: {prod: {production: 'yes'}}\n", "'environments.prod.production' must be true or false"),
    ("environments: {qa: {production: false}}\n", "'environments.qa.backend' is required"),
    ("environments: {prod: {backend: azure}}\n", "expected one of: local, rds"),
    ("environments: {prod: {database: {password: hunter2hunter2}}}\n", "must be a secret reference"),
    ("log: [1, 2]\n", "'log' must be a mapping"),
    ("log: {level: info\n", "is not valid YAML"),
])
def test_schema_errors_name_the_key_and_the_file(tmp_path, monkeypatch, text, message):
    path = write_config(tmp_path / "bad.yaml", text, monkeypatch)
    with pytest.raises(ConfigError) as exc:
        config.load("prod")
    assert message in str(exc.value)
    assert str(path) in str(exc.value)
    assert "\n" not in str(exc.value).strip()
    assert "hunter2" not in str(exc.value)


def test_env_var_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("AEP_OPS_LOG__LEVL", "info")
    with pytest.raises(ConfigError, match="environment variable AEP_OPS_LOG__LEVL: unknown key 'log.levl'"):
        config.load()


def test_unknown_environment_and_bad_flag_are_usage_errors():
    with pytest.raises(UsageError, match="unknown environment 'qa' .configured: dev, local, prod, staging"):
        config.load("qa")
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        config.load(None, ["log.level"])


def test_missing_explicit_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("AEP_OPS_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="no such file"):
        config.load()


def test_secrets_are_references_shown_masked(tmp_path, monkeypatch):
    write_config(tmp_path / "c.yaml", "environments: {prod: {database: {password: 'env:AEP_DB_PW'}}}\n", monkeypatch)
    monkeypatch.setenv("AEP_DB_PW", "s3cr3t-value")
    settings = config.load("prod")
    ref = settings.get("environments.prod.database.password")
    assert isinstance(ref, SecretRef) and "s3cr3t" not in repr(ref)
    assert settings.masked()["environments"]["prod"]["database"]["password"] == "<secret env:AEP_DB_PW>"
    assert settings.secret(ref) == "s3cr3t-value"


def test_plugins_accept_a_comma_list_from_the_environment(monkeypatch):
    monkeypatch.setenv("AEP_OPS_PLUGINS", "a.b, c.d")
    assert config.load().get("plugins") == ["a.b", "c.d"]
