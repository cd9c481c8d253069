"""AWS access for aep-ops: one client factory, and AWS errors turned into AepErrors.

Domain modules (``aep_ops.db.backends.rds_facts``, ...) take ready clients as arguments, so tests can hand
them a Stubber-backed client or one pointed at the moto server.
"""

from aep_ops.aws.clients import (
    AwsAccessDenied,
    AwsCredentialsError,
    AwsError,
    AwsNotFound,
    AwsThrottled,
    AwsTimeout,
    aws_errors,
    aws_settings,
    client,
    error_code,
    translate,
)

__all__ = [
    "AwsAccessDenied", "AwsCredentialsError", "AwsError", "AwsNotFound", "AwsThrottled", "AwsTimeout",
    "aws_errors", "aws_settings", "client", "error_code", "translate",
]
