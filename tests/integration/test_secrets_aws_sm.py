"""``aws-sm:`` references resolve through the one AWS client factory: the environment's endpoint
override, retries and CA bundle apply to Secrets Manager as to every other AWS call.

Real moto server behind real nginx TLS (its own self-signed CA): without the environment's
``aws.ca_bundle`` the certificate is refused, with it the secret is read.
"""

from __future__ import annotations

import json
import uuid

import pytest

from aep_ops import config
from aep_ops.base.errors import SecretError
from tests.conftest import write_config

SECRET = "sm-canary-\"q\"-7f3e"  # a quote: the value must come back exactly, and be masked


@pytest.fixture
def staging(moto_account, s3_tls_proxy, tmp_path, monkeypatch):
    name = f"aep/db-{uuid.uuid4().hex[:8]}"
    moto_account.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps({"password": SECRET}))
    for key, value in moto_account.environ.items():
        if key.startswith("AWS_") and key != "AWS_ENDPOINT_URL":  # the endpoint comes from the config only
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    def write(with_ca: bool):
        ca = f"      ca_bundle: {s3_tls_proxy.ca_file}\n" if with_ca else ""
        write_config(tmp_path / f"aep-ops-{with_ca}.yaml", (
            "environments:\n  staging:\n    aws:\n"
            f"      region: {moto_account.region}\n      endpoint_url: {s3_tls_proxy.endpoint_url}\n{ca}"
            f"    database:\n      host: db.internal\n      user: aep\n      password: 'aws-sm:{name}#password'\n"),
            monkeypatch)
    return name, write


def test_aws_sm_goes_through_the_environment_endpoint_and_ca_bundle(staging):
    name, write = staging
    write(with_ca=True)
    settings = config.load("staging")
    assert settings.secret(f"aws-sm:{name}#password") == SECRET


def test_without_the_ca_bundle_the_private_endpoint_is_refused(staging):
    name, write = staging
    write(with_ca=False)
    settings = config.load("staging")
    with pytest.raises(SecretError, match=rf"^secret aws-sm:{name}: .*(SSL|certificate)"):
        settings.secret(f"aws-sm:{name}#password")


def test_db_url_reveals_the_password_read_from_secrets_manager_and_masks_it_otherwise(staging, cli):
    name, write = staging
    write(with_ca=True)
    shown = cli("db.url", "--env", "staging", "--reveal", check_rc=0).stdout
    assert f"password={SECRET}" in shown
    masked = cli("db.url", "--env", "staging", check_rc=0)
    assert SECRET not in masked.stdout + masked.stderr and "****" in masked.stdout
