"""The S3 side of logs.ship: create-only uploads through s3transfer, the HEAD that proves what S3
holds, and the cleanup of this tool's own abandoned multipart uploads.

Create-only: ``IfNoneMatch='*'`` is added to every PutObject and CompleteMultipartUpload the
client sends (s3transfer does not let it through its ExtraArgs, so a botocore event handler adds
it), so a file shipped twice meets PreconditionFailed, never a second copy. A single-part upload
carries the SHA-256 computed on the host (S3 refuses a body that does not match it); a multipart
one asks botocore for a SHA-256 per part (S3 keeps the composite)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any

from aep_ops.logs.checksums import MB

EXISTS = {"PreconditionFailed", "ConditionalRequestConflict"}


@dataclass(frozen=True)
class Transfer:
    """One run's S3 access: the client, its transfer manager and the fixed put arguments."""

    client: Any
    manager: Any
    bucket: str
    threshold: int
    part_size: int
    encryption: dict[str, str]

    def close(self) -> None:
        self.manager.shutdown()


def s3_for(ctx: Any) -> Any:
    """The run's one S3 client (making a client loads botocore's S3 model, ~0.1 s), create-only."""
    if "s3_client" not in ctx.params:
        from aep_ops.aws import client as aws_client

        s3 = aws_client(ctx.settings, "s3")
        s3.meta.events.register("before-parameter-build.s3.PutObject", _create_only)
        s3.meta.events.register("before-parameter-build.s3.CompleteMultipartUpload", _create_only)
        ctx.params["s3_client"] = s3
    return ctx.params["s3_client"]


def open_transfer(s3: Any, bucket: str, values: dict[str, Any], *, max_bandwidth: int | None) -> Transfer:
    from boto3.s3.transfer import TransferConfig
    from s3transfer.manager import TransferManager

    threshold, part = int(values["multipart_threshold_mb"]) * MB, int(values["part_size_mb"]) * MB
    config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=part,
                            max_concurrency=int(values["concurrency"]), max_bandwidth=max_bandwidth)
    encryption = {"ServerSideEncryption": values["sse"]}
    if values["sse"] == "aws:kms":
        encryption["SSEKMSKeyId"] = values["kms_key_id"]
    return Transfer(s3, TransferManager(s3, config), bucket, threshold, part, encryption)


def _create_only(params: dict[str, Any], **_: Any) -> None:
    params.setdefault("IfNoneMatch", "*")


def put(transfer: Transfer, stream: IO[bytes], key: str, *, size: int, checksum: str,
        extra: dict[str, Any]) -> bool:
    """Upload; True when created, False when the key already holds an object (PreconditionFailed)."""
    from botocore.exceptions import ClientError

    from aep_ops.aws import error_code

    args = {**transfer.encryption, **extra, "ChecksumAlgorithm": "SHA256"}
    if size < transfer.threshold:
        args["ChecksumSHA256"] = checksum  # botocore sends it as it is: S3 checks the body against it
    try:
        transfer.manager.upload(stream, transfer.bucket, key, extra_args=args).result()
    except ClientError as exc:
        if error_code(exc) in EXISTS:
            return False
        raise
    return True


def head(transfer: Transfer, key: str, part_number: int | None = None) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    args: dict[str, Any] = {"Bucket": transfer.bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if part_number:
        args["PartNumber"] = part_number
    try:
        return transfer.client.head_object(**args)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise


def delete(transfer: Transfer, key: str) -> None:
    transfer.client.delete_object(Bucket=transfer.bucket, Key=key)


def abort_abandoned(s3: Any, bucket: str, prefixes: list[str], started_before: Any) -> list[str]:
    """Abort the incomplete multipart uploads under ``prefixes`` (this run's hosts) begun before
    this run: a killed ship leaves them behind, and each holds its parts (and their cost)."""
    aborted = []
    paginator = s3.get_paginator("list_multipart_uploads")
    for prefix in prefixes:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for upload in page.get("Uploads") or []:
                if upload["Initiated"] < started_before:
                    s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted.append(upload["Key"])
    return aborted
