"""Which S3 server the native runner runs: the one whose Compose profile COMPOSE_PROFILES names,
as under Compose (one setting for both runners); with neither, the server at S3_ENDPOINT_URL."""

from __future__ import annotations

from mlflow_lab.compose import active_profiles
from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings

# compose.yaml's S3 profiles -> the server the native runner runs for it (the overlay's command)
S3_SERVERS = {"seaweedfs": "SeaweedFS", "minio": "MinIO"}
# The native runner's own choice before COMPOSE_PROFILES was the one; older .env files still hold it.
RETIRED_SETTING = "LAB_NATIVE_S3"


def s3_profile(settings: Settings) -> str | None:
    """The S3 profile named in COMPOSE_PROFILES; None: an external server, at S3_ENDPOINT_URL."""
    named = [profile for profile in S3_SERVERS if profile in active_profiles(settings)]
    if len(named) > 1:
        raise LabError(
            f"COMPOSE_PROFILES names {' and '.join(named)}: the native runner runs one S3 server on S3_PORT, so keep one."
        )
    chosen = named[0] if named else None
    retired = settings.get(RETIRED_SETTING)
    if retired and retired != chosen:
        raise LabError(
            f"{RETIRED_SETTING}={retired} in .env is no longer read (COMPOSE_PROFILES chooses the S3 server for both "
            f"runners, now {chosen or 'none'}): delete that line, and put {retired} in COMPOSE_PROFILES if you want it."
        )
    if chosen is None and not settings.get("S3_ENDPOINT_URL"):
        raise LabError(
            f"COMPOSE_PROFILES names no S3 server ({' or '.join(S3_SERVERS)}): add one, or set S3_ENDPOINT_URL to yours."
        )
    return chosen


def describe(settings: Settings) -> str:
    """Where the lab's artifacts go, for `lab up`."""
    profile, bucket = s3_profile(settings), settings["S3_BUCKET"]
    if profile is None:
        return f"S3 at {settings['S3_ENDPOINT_URL']} (bucket {bucket})"
    return f"{S3_SERVERS[profile]} at 127.0.0.1:{settings['S3_PORT']} (bucket {bucket})"
