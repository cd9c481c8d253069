"""certs.renew's rules that need no CA: the versioned store (modes, current, pruning, a damaged
pointer), the production/staging guards, --name, and the http-01 token path."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from aep_ops.certs import store
from aep_ops.certs.renewal import acme_settings, selected
from aep_ops.certs.webroot import WebrootChallenge
from aep_ops.base.errors import ConfigError, StateUnwritable, StepFailed, UsageError

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)


def settings(tmp_path, env=None, production=False):
    return SimpleNamespace(state_dir=tmp_path, env_name="staging", production=production, env=env or {})


def save(s, serial, *, staging=True, directory="https://ca.test/dir"):
    return store.save(s, "api", key_pem=f"KEY-{serial}\n", cert_pem="CERT\n", chain_pem="CHAIN\n",
                      fullchain_pem="CERT\nCHAIN\n", serial=serial, not_before=NOW, not_after=NOW, issuer="CA",
                      domains=["api.aep.test"], key_type="ecdsa-p256", directory=directory, staging=staging, now=NOW)


def test_versions_are_kept_private_and_the_newest_is_current(tmp_path):
    s = settings(tmp_path)
    first, second = save(s, "aa"), save(s, "bb")
    assert (first.number, second.number) == (1, 2)
    assert store.current(s, "api").serial == "bb"
    assert [v.serial for v in store.versions(s, "api")] == ["aa", "bb"]  # the previous one kept for rollback
    for version in (first, second):
        assert stat.S_IMODE(os.stat(version.path / "privkey.pem").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(version.path).st_mode) == 0o700
    assert "KEY" not in repr(second) and "KEY" not in str(second.to_json())


def test_old_versions_beyond_the_kept_ones_are_pruned(tmp_path):
    s = settings(tmp_path)
    for index in range(store.KEEP + 2):
        save(s, f"{index:02x}")
    assert [v.number for v in store.versions(s, "api")] == list(range(3, store.KEEP + 3))


def test_a_damaged_current_pointer_is_named(tmp_path):
    s = settings(tmp_path)
    save(s, "aa")
    (store.lineage_dir(s, "api") / "current").write_text("garbage\n")
    with pytest.raises(StateUnwritable, match="current is damaged"):
        store.current(s, "api")


def test_a_production_lineage_never_takes_a_staging_certificate(tmp_path):
    s = settings(tmp_path)
    save(s, "aa", staging=False, directory="https://acme-v02.api.letsencrypt.org/directory")
    with pytest.raises(UsageError, match="refusing to switch"):
        store.check_directory_switch(s, "api", "https://acme-staging-v02.api.letsencrypt.org/directory",
                                     staging=True)
    store.check_directory_switch(s, "api", "https://acme-v02.api.letsencrypt.org/directory", staging=False)


def test_production_refuses_a_staging_directory_and_a_missing_one_is_named(tmp_path):
    staging_url = "https://acme-staging-v02.api.letsencrypt.org/directory"
    with pytest.raises(ConfigError, match="staging \\(test\\) CA"):
        acme_settings(settings(tmp_path, {"acme": {"directory": staging_url}}, production=True), staging=False)
    with pytest.raises(ConfigError, match="acme.directory is not set"):
        acme_settings(settings(tmp_path, {"acme": {}}), staging=False)
    with pytest.raises(ConfigError, match="acme.staging_directory is not set"):
        acme_settings(settings(tmp_path, {"acme": {"directory": "https://ca.test/dir"}}), staging=True)
    assert acme_settings(settings(tmp_path, {"acme": {"directory": staging_url}}), staging=False)["staging"]


@pytest.mark.parametrize("name, says", [("", "--name is empty"), ("  ", "--name is empty"),
                                        ("web", "no such certificate in environment staging (configured: api)")])
def test_name_blank_or_unknown_is_refused(tmp_path, name, says):
    s = settings(tmp_path, {"certificates": [{"name": "api", "domains": ["api.aep.test"]}]})
    with pytest.raises(UsageError, match=says.replace("(", "\\(").replace(")", "\\)")):
        selected(s, name)
    assert [c["name"] for c in selected(s, None)] == ["api"]


@pytest.mark.parametrize("token", ["../../etc/passwd", ".well-known/acme-challenge/../../x", "/etc/passwd"])
def test_a_token_path_that_leaves_the_challenge_directory_is_refused(token):
    challenge = WebrootChallenge("/srv/{host}/webroot", [], connect=lambda host: None)
    with pytest.raises(StepFailed, match="leaves the webroot"):
        challenge._path(token, SimpleNamespace(name="h01"))
    good = challenge._path(".well-known/acme-challenge/abc", SimpleNamespace(name="h01"))
    assert good == "/srv/h01/webroot/.well-known/acme-challenge/abc"


@pytest.mark.parametrize("cert, says", [
    ({"domains": []}, "domains is empty"),
    ({"domains": ["api.aep.test", "a b"]}, "'a b' is not a DNS name"),
    ({"domains": ["api.*.aep.test"], "validation": "dns-01", "route53_zone_id": "Z1"}, "is not a DNS name"),
    ({"domains": ["api.aep.test"], "validation": "dns-01"}, "dns-01 needs route53_zone_id"),
    ({"domains": ["api.aep.test"]}, "http-01 needs nginx.role and nginx.webroot"),
    ({"domains": ["*.aep.test"], "nginx": {"role": "web", "webroot": "/srv/www"}}, "a wildcard name needs"),
])
def test_an_order_that_cannot_succeed_is_refused_before_the_ca_is_asked(tmp_path, cert, says):
    from aep_ops.certs.renewal import check_renewable

    with pytest.raises(ConfigError, match=says.replace("*", "\\*")):
        check_renewable(settings(tmp_path), {"name": "api", **cert})
    check_renewable(settings(tmp_path), {"name": "api", "domains": ["aep.test", "*.aep.test"],
                                         "validation": "dns-01", "route53_zone_id": "Z1"})
