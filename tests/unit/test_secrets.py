"""Secret references resolve at use, once, and their values are masked everywhere after."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from aep_ops.base.errors import ConfigError, SecretError
from aep_ops.base.redact import redact
from aep_ops.base.secrets import SecretRef, SecretResolver, parse_ref


def test_env_and_file_references(tmp_path, monkeypatch):
    monkeypatch.setenv("AEP_TEST_SECRET", "from-the-env-123")
    (tmp_path / "pw").write_text("from-a-file-456\n")
    resolver = SecretResolver()
    assert resolver.resolve("env:AEP_TEST_SECRET") == "from-the-env-123"
    assert resolver.resolve(SecretRef(f"file:{tmp_path / 'pw'}")) == "from-a-file-456"
    assert redact("dsn=postgresql://u:from-a-file-456@h/db") == "dsn=postgresql://u:****@h/db"


def test_values_are_cached_for_the_run(monkeypatch):
    monkeypatch.setenv("AEP_TEST_SECRET", "first-value")
    resolver = SecretResolver()
    assert resolver.resolve("env:AEP_TEST_SECRET") == "first-value"
    monkeypatch.setenv("AEP_TEST_SECRET", "second-value")
    assert resolver.resolve("env:AEP_TEST_SECRET") == "first-value"


def test_errors_name_the_reference_never_a_value(tmp_path):
    resolver = SecretResolver()
    with pytest.raises(SecretError, match="env:AEP_NOT_SET: environment variable AEP_NOT_SET is not set"):
        resolver.resolve("env:AEP_NOT_SET")
    with pytest.raises(SecretError, match="cannot read it"):
        resolver.resolve(f"file:{tmp_path / 'missing'}")
    with pytest.raises(ConfigError, match="not a literal value"):
        parse_ref("plaintext-password", where="x")


class _Vault(BaseHTTPRequestHandler):
    """A stand-in for Vault's KV v2 read call: no Vault server package exists for Debian."""

    def do_GET(self):
        if self.headers.get("X-Vault-Token") != "vault-token-789" or self.path != "/v1/secret/data/aep/db":
            self.send_response(403)
            self.end_headers()
            return
        body = json.dumps({"data": {"data": {"password": "vault-pass-000"}, "metadata": {}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_vault_kv2_over_real_http(monkeypatch):
    server = HTTPServer(("127.0.0.1", 0), _Vault)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AEP_VAULT_TOKEN", "vault-token-789")
        addr = f"http://127.0.0.1:{server.server_port}"
        resolver = SecretResolver(vault_addr=addr, vault_token=SecretRef("env:AEP_VAULT_TOKEN"))
        assert resolver.resolve("vault:secret/aep/db#password") == "vault-pass-000"
        with pytest.raises(SecretError, match="no key 'user'"):
            resolver.resolve("vault:secret/aep/db#user")
        with pytest.raises(SecretError, match="HTTP 403"):
            resolver.resolve("vault:secret/other#password")
        assert "vault-token-789" not in redact("token vault-token-789") and "vault-pass-000" not in redact("vault-pass-000")
    finally:
        server.shutdown()
