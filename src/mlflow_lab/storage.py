"""The S3 side of the lab: one client factory and the bucket the artifacts live in."""

from __future__ import annotations

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, EndpointConnectionError

from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings


def s3_client(settings: Settings):
    # Path-style addressing: MinIO and most S3-compatible servers have no per-bucket DNS.
    return boto3.client(
        "s3",
        endpoint_url=settings["S3_ENDPOINT_URL"],
        aws_access_key_id=settings["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["S3_SECRET_ACCESS_KEY"],
        region_name=settings["S3_REGION"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 10, "mode": "standard"}),
    )


def ensure_bucket(settings: Settings) -> bool:
    """Create the artifact bucket if it does not exist; True when it was created."""
    client, bucket = s3_client(settings), settings["S3_BUCKET"]
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except EndpointConnectionError as exc:
        raise LabError(f"cannot reach the S3 endpoint {settings['S3_ENDPOINT_URL']}: {exc}") from None
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise LabError(f"cannot use bucket {bucket} at {settings['S3_ENDPOINT_URL']}: {exc}") from None
    client.create_bucket(Bucket=bucket)
    return True
