"""A moto server for tests: real HTTP AWS APIs on 127.0.0.1, no AWS account.

Server mode (not ``mock_aws``) so that boto3 clients made anywhere, including by code
under test and by subprocesses, talk to it via ``endpoint_url``. moto and boto3 are
imported inside the fixture so that loading the pytest plugin stays cheap.

One server per session (it costs a second to start), and one AWS *account* per test:
``moto_account`` assumes a role into a fresh 12-digit account, and moto keeps every account's
resources apart (it maps the returned access key to that account), so a test starts clean
without wiping anyone else's state. moto's own ``POST /moto-api/reset`` forgets every account
at once; ``MotoServer.reset()`` forgets only the default account's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import pytest

from aep_ops.testing.ports import free_port

REGION = "eu-west-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's: where unknown credentials land
# Dummy credentials: moto accepts anything; these must never be real ones.
CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}


@dataclass
class MotoServer:
    """Handle on a running moto server, acting as one account (the default one unless made by
    ``new_account``)."""

    endpoint_url: str
    region: str = REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    credentials: dict[str, str] = field(default_factory=lambda: dict(CREDENTIALS), repr=False)
    _server: Any = field(default=None, repr=False)

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` pointed at this server with this account's credentials
        and no retries (moto answers unimplemented actions with HTTP 500, which boto3 retries)."""
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region,
            "config": Config(retries={"max_attempts": 1}),
            **self.credentials,
        }
        options.update(kwargs)
        return boto3.session.Session().client(service, **options)

    def new_account(self) -> MotoServer:
        """The same server seen from a fresh, empty account of its own (checked with
        GetCallerIdentity: a key moto did not map would silently land in the default account)."""
        account_id = "7" + f"{uuid.uuid4().int % 10**11:011d}"
        assumed = self.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/aep-ops-test",
                                                 RoleSessionName="aep-ops-test")["Credentials"]
        account = replace(self, account_id=account_id, _server=None, credentials={
            "aws_access_key_id": assumed["AccessKeyId"], "aws_secret_access_key": assumed["SecretAccessKey"],
            "aws_session_token": assumed["SessionToken"]})
        seen = account.client("sts").get_caller_identity()["Account"]
        if seen != account_id:
            raise RuntimeError(f"moto put the new account's credentials in account {seen}, not {account_id}")
        return account

    def reset(self) -> None:
        """Forget every resource of the default account, and only of it (tests in their own
        accounts keep theirs). A per-test account is never reset: its credentials would go with
        it and its clients would land in the default account; take a new account instead."""
        if self.account_id != DEFAULT_ACCOUNT_ID:
            raise RuntimeError(f"account {self.account_id} is a test's own: take moto_server.new_account()"
                               " for a clean one instead of resetting it")
        forget_account(DEFAULT_ACCOUNT_ID)

    @property
    def aws_yaml(self) -> str:
        """An environment's ``aws:`` section for this server, in YAML flow style (test configs)."""
        return f"{{region: {self.region}, endpoint_url: {self.endpoint_url}}}"

    def use_in(self, monkeypatch: Any) -> None:
        """Make this account's credentials and endpoint the process's (and its children's), as on an ops host."""
        for key, value in self.environ.items():
            monkeypatch.setenv(key, value)

    @property
    def environ(self) -> dict[str, str]:
        """Environment for code that builds its own clients (set it with monkeypatch.setenv,
        or pass it to a subprocess); never written to os.environ by this module."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": self.credentials["aws_session_token"],
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }


def forget_account(account_id: str) -> None:
    """Drop one account's state from the in-process moto server (the ThreadedMotoServer runs in
    this process). moto has no per-account reset: its S3 reset disposes of every account's
    objects, so each service's per-account backend is dropped instead, and S3's shared bucket
    namespace loses that account's bucket names."""
    from moto.core.base_backend import BackendDict, backend_lock
    from moto.s3.models import s3_backends

    with backend_lock:
        for services in list(BackendDict._instances):
            dropped = services.pop(account_id, None)  # dict.pop: BackendDict.__getitem__ would create it
            if services is s3_backends and dropped:
                _close_objects(dropped)
        for bucket, (_, owner) in list(s3_backends.bucket_accounts.items()):
            if owner == account_id:
                del s3_backends.bucket_accounts[bucket]


def _close_objects(s3_account: Any) -> None:
    """Close the temporary files that hold a dropped S3 account's objects (as S3's reset does)."""
    for backend in s3_account.values():
        for bucket in backend.buckets.values():
            for key in bucket.keys.values():
                if hasattr(key, "dispose"):
                    key.dispose()


def start_moto_server(host: str = "127.0.0.1", port: int | None = None) -> MotoServer:
    """Start a ThreadedMotoServer in this process (stop it with ``stop_moto_server``)."""
    from moto.server import ThreadedMotoServer

    port = port or free_port()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return MotoServer(endpoint_url=f"http://{host}:{port}", _server=server)


def stop_moto_server(moto: MotoServer) -> None:
    if moto._server is not None:
        moto._server.stop()
        moto._server = None


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server per test session, as the default account. Tests that create resources
    take ``moto_account`` (their own account) rather than sharing this one."""
    moto = start_moto_server()
    try:
        yield moto
    finally:
        stop_moto_server(moto)


@pytest.fixture
def moto_account(moto_server: MotoServer) -> MotoServer:
    """The session's moto server as a fresh, empty AWS account of this test's own: nothing
    another test created is visible, and nothing this test creates is visible to another."""
    return moto_server.new_account()
