"""A moto server for tests: real HTTP AWS APIs on 127.0.0.1, no AWS account.

Server mode (not ``mock_aws``) so that boto3 clients made anywhere, including by code
under test and by subprocesses, talk to it via ``endpoint_url``. moto and boto3 are
imported inside the fixture so that loading the pytest plugin stays cheap.
"""

from __future__ import annotations

import socket
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest

REGION = "eu-west-1"
# Dummy credentials: moto accepts anything; these must never be real ones.
CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}


@dataclass
class MotoServer:
    """Handle on a running moto server."""

    endpoint_url: str
    region: str = REGION
    _server: Any = field(default=None, repr=False)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server with dummy credentials and
        no retries (moto answers unimplemented actions with HTTP 500, which boto3 retries)."""
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "config": Config(retries={"max_attempts": 1}),
            **CREDENTIALS,
        }
        options.update(kwargs)
        return boto3.session.Session().client(service, **options)

    def reset(self) -> None:
        """Forget every resource in every service (POST /moto-api/reset)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    @property
    def environ(self) -> dict[str, str]:
        """Environment for code that builds its own clients (set it with monkeypatch.setenv,
        or pass it to a subprocess); never written to os.environ by this module."""
        return {
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": CREDENTIALS["aws_session_token"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }


def start_moto_server(host: str = "127.0.0.1", port: int | None = None) -> MotoServer:
    """Start a ThreadedMotoServer in this process (stop it with ``stop_moto_server``)."""
    from moto.server import ThreadedMotoServer

    port = port or _free_port(host)
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return MotoServer(endpoint_url=f"http://{host}:{port}", _server=server)


def stop_moto_server(moto: MotoServer) -> None:
    if moto._server is not None:
        moto._server.stop()
        moto._server = None


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server per test session. State is shared between tests: call ``reset()``
    where a test needs a clean account."""
    moto = start_moto_server()
    try:
        yield moto
    finally:
        stop_moto_server(moto)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
