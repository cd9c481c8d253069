"""The one boto3 client factory, and the boundary where AWS errors become AepErrors.

Every client gets bounded retries (botocore "standard" mode), connect/read timeouts and the
environment's region, profile, endpoint override (the moto server in tests) and CA bundle, so
no call can hang a runbook or retry forever; secret references (``aws-sm:``) come through
here too. botocore's errors are translated once, here, into messages an on-call engineer can
act on: which action, on what, and what to do next. The request parameters are never echoed
(they can hold passwords or secret strings), and every message goes through ``aep_ops.base.redact``.

boto3 is imported inside the functions: importing it costs ~0.25 s that listing tasks must not pay.
"""

from __future__ import annotations

import contextlib
import re
import threading
from typing import Any, Iterator, Mapping

from aep_ops.base import redact
from aep_ops.base.errors import AepError, CommandTimeout, ConfigError, ExecutionError, HostUnreachable

DEFAULT_MAX_ATTEMPTS = 5
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
USER_AGENT_APPID = "aep-ops"

_ACCESS_DENIED = {
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess",
    "AuthorizationError", "NotAuthorized", "AuthorizationErrorException",
}
_BAD_CREDENTIALS = {
    "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "UnrecognizedClientException",
    "SignatureDoesNotMatch", "RequestExpired", "InvalidSignatureException", "InvalidAccessKeyId",
}
_THROTTLED = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "SlowDown", "PriorRequestNotComplete", "RequestThrottled",
}
_NOT_FOUND = {"ResourceNotFoundException", "NoSuchHostedZone", "NoSuchKey", "NoSuchBucket", "NotFound"}


class AwsError(ExecutionError):
    """An AWS API call failed; ``code`` is AWS's error code (None for client-side failures)."""

    def __init__(self, message: str, *, code: str | None = None, operation: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.operation = operation


class AwsAccessDenied(AwsError):
    """IAM refused the action: the fix is in a policy, not in aep-ops."""


class AwsNotFound(AwsError):
    """The named resource does not exist in that account and region."""


class AwsThrottled(AwsError):
    """Still throttled after the bounded retries."""


class AwsCredentialsError(AwsError):
    """No usable credentials, or AWS rejected them (expired, wrong account, clock skew)."""


class AwsTimeout(AwsError, CommandTimeout):
    """A waiter ran out of attempts; the work may still complete in AWS (re-run to resume)."""


def aws_settings(source: Any) -> dict[str, Any]:
    """The ``aws`` section from Settings, an environment dict, or the aws dict itself."""
    if source is None:
        return {}
    if hasattr(source, "env") and hasattr(source, "env_name"):  # aep_ops.config.Settings
        return dict(source.env.get("aws") or {})
    if isinstance(source, Mapping):
        nested = source.get("aws")
        if isinstance(nested, Mapping):
            return dict(nested)
        if "aws" in source and nested is None:
            return {}
        return dict(source)
    raise TypeError(f"expected Settings or a mapping, not {type(source).__name__}")


def client(source: Any, service: str, *, max_attempts: int | None = None,
           connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> Any:
    """A boto3 client for ``service`` in the environment's region/profile/endpoint.

    ``max_attempts`` counts the first attempt too (tests pass 1: moto answers unimplemented
    actions with HTTP 500, which would otherwise be retried).
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

    aws = aws_settings(source)
    region, profile = aws.get("region") or None, aws.get("profile") or None
    endpoint = aws.get("endpoint_url") or None
    ca_bundle = aws.get("ca_bundle") or None
    attempts = DEFAULT_MAX_ATTEMPTS if max_attempts is None else int(max_attempts)
    if attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_appid=USER_AGENT_APPID,
    )
    try:
        session = boto3.session.Session(botocore_session=botocore_session(profile), region_name=region)
        return session.client(service, endpoint_url=endpoint, config=config, verify=ca_bundle)
    except ProfileNotFound:
        raise ConfigError(
            f"aws.profile {profile!r} is not defined in ~/.aws/config or ~/.aws/credentials on this host; "
            "fix aws.profile for this environment or add the profile"
        ) from None
    except NoRegionError:
        raise ConfigError(f"no AWS region for {service}: set aws.region for this environment") from None
    except BotoCoreError as exc:
        raise translate(exc, doing=f"creating the AWS {service} client") from exc


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def botocore_session(profile: str | None) -> Any:
    """A new botocore session (credentials are resolved afresh: the environment may have changed)
    sharing one loader of botocore's service models: loading them is most of a client's making
    (~0.1 s each time, JSON parsed and data directories listed), the models never change."""
    global _LOADER
    import botocore.session

    session = botocore.session.Session(profile=profile)
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _LOADER)
    return session


@contextlib.contextmanager
def aws_errors(client: Any, doing: str, *, resource: str | None = None) -> Iterator[None]:
    """Translate botocore errors raised in the block; ``doing`` says what aep-ops was doing."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except AepError:
        raise
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, doing=doing, resource=resource, client=client) from exc


def error_code(exc: BaseException) -> str | None:
    """AWS's error code of a ClientError (``AccessDenied``, ``DBInstanceNotFound``, ...), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        return (response.get("Error") or {}).get("Code")
    return None


def translate(exc: BaseException, *, doing: str, resource: str | None = None, client: Any = None) -> AepError:
    """One botocore exception -> the AepError that says what, where and what next."""
    from botocore.exceptions import ClientError

    service, region, endpoint = _client_info(client)
    if isinstance(exc, ClientError):
        return _from_client_error(exc, doing=doing, resource=resource, service=service, region=region)
    return _from_botocore_error(exc, doing=doing, resource=resource, service=service, endpoint=endpoint)


def _from_client_error(exc: Any, *, doing: str, resource: str | None, service: str, region: str) -> AepError:
    code = error_code(exc) or "Unknown"
    message = _clean((exc.response.get("Error") or {}).get("Message") or "")
    operation = getattr(exc, "operation_name", None) or "?"
    action = f"{service}:{operation}"
    on = f" on {resource}" if resource else ""
    where = f"{resource} in {region}" if resource else region
    if code in _ACCESS_DENIED:
        return AwsAccessDenied(
            f"{doing}: AWS denied {action}{on} ({region}, {code}); check that the IAM policy of the identity "
            f"aep-ops runs as allows {action}{' on that resource' if resource else ''} "
            "(`aws sts get-caller-identity` shows which identity)", code=code, operation=operation)
    if code in _BAD_CREDENTIALS:
        return AwsCredentialsError(
            f"{doing}: AWS rejected the credentials for {action} ({code}); refresh them (e.g. `aws sso login`) "
            "or check the host clock, then re-run", code=code, operation=operation)
    if code in _THROTTLED:
        return AwsThrottled(
            f"{doing}: AWS still throttles {action} in {region} ({code}) after bounded retries; "
            "wait a minute and re-run (the run resumes from this step)", code=code, operation=operation)
    if code in _NOT_FOUND or code.endswith(("NotFound", "NotFoundFault", "NotFoundException")):
        return AwsNotFound(
            f"{doing}: {where or 'the resource'} not found ({code} from {action}); check the name in the "
            "configuration and the region", code=code, operation=operation)
    detail = f": {message}" if message else ""
    return AwsError(
        f"{doing}: {action}{on} in {region} failed: {code}{detail}; fix the cause and re-run "
        "(the run resumes from this step)", code=code, operation=operation)


def _from_botocore_error(exc: BaseException, *, doing: str, resource: str | None, service: str,
                         endpoint: str | None) -> AepError:
    from botocore import exceptions as bx

    name = type(exc).__name__
    if isinstance(exc, bx.WaiterError):
        last = getattr(exc, "last_response", None) or {}
        if "Error" in last:
            code = (last.get("Error") or {}).get("Code")
            return AwsError(f"{doing}: waiting for {resource or 'the resource'} failed: {code}: "
                            f"{_clean((last.get('Error') or {}).get('Message') or '')}", code=code)
        reason = _clean(str(getattr(exc, "kwargs", {}).get("reason") or exc))
        if "Max attempts exceeded" in reason:
            return AwsTimeout(f"{doing}: {resource or 'the resource'} did not reach the expected state in time; "
                              "the work may still finish in AWS: re-run to resume waiting")
        return AwsError(f"{doing}: {resource or 'the resource'} entered a failure state ({reason})")
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError,
                        bx.TokenRetrievalError, bx.SSOError)):
        return AwsCredentialsError(
            f"{doing}: no usable AWS credentials ({name}); set aws.profile for this environment, "
            "log in (`aws sso login --profile ...`) or provide the AWS_* variables")
    if isinstance(exc, bx.NoRegionError):
        return ConfigError(f"{doing}: no AWS region; set aws.region for this environment")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError,
                        bx.ConnectionClosedError)):
        return HostUnreachable(
            f"{doing}: cannot reach the AWS {service} endpoint {endpoint or ''} ({name}); check the network, "
            "proxy settings and aws.endpoint_url")
    if isinstance(exc, bx.ParamValidationError):
        # botocore quotes offending values; drop them, they may be secrets.
        lines = [re.sub(r", value: .*?(?=, type:|$)", "", line) for line in str(exc).splitlines()[1:]]
        detail = redact.redact("; ".join(line.strip() for line in lines if line.strip()))
        return AwsError(f"{doing}: invalid request parameters ({detail}); this is a bug in aep-ops")
    return AwsError(f"{doing}: {name}: {_clean(str(exc))}")


def _client_info(client: Any) -> tuple[str, str, str | None]:
    if client is None:
        return "aws", "?", None
    meta = client.meta
    model = meta.service_model
    service = getattr(model, "signing_name", None) or model.service_name
    return service, meta.region_name or "?", meta.endpoint_url


def _clean(text: str) -> str:
    first = (text or "").strip().splitlines()
    return redact.redact(first[0] if first else "")
