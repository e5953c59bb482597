"""The native runner's S3 server is the one COMPOSE_PROFILES names for Compose; what `lab up` says
about it, and the sentence for a setting that cannot work natively."""

from __future__ import annotations

import pytest

from mlflow_lab.errors import LabError
from mlflow_lab.native import s3_server
from mlflow_lab.settings import Settings

BASE = {"S3_PORT": "9000", "S3_BUCKET": "mlflow", "S3_ENDPOINT_URL": ""}


def settings(**values: str) -> Settings:
    return Settings({**BASE, **values})


@pytest.mark.parametrize(
    "values, said",
    [
        ({"COMPOSE_PROFILES": "seaweedfs"}, "SeaweedFS at 127.0.0.1:9000 (bucket mlflow)"),
        ({"COMPOSE_PROFILES": "jobs,minio", "S3_ENDPOINT_URL": "http://minio:9000"}, "MinIO at 127.0.0.1:9000 (bucket mlflow)"),
        (
            {"COMPOSE_PROFILES": "jobs", "S3_ENDPOINT_URL": "https://s3.example.com"},
            "S3 at https://s3.example.com (bucket mlflow)",
        ),
        # An older .env still holding the retired setting works while it agrees.
        ({"COMPOSE_PROFILES": "seaweedfs", "LAB_NATIVE_S3": "seaweedfs"}, "SeaweedFS at 127.0.0.1:9000 (bucket mlflow)"),
    ],
)
def test_the_server_compose_profiles_names_runs(values, said):
    assert s3_server.describe(settings(**values)) == said


@pytest.mark.parametrize(
    "values, sentence",
    [
        (
            {"COMPOSE_PROFILES": "seaweedfs", "LAB_NATIVE_S3": "minio"},
            "LAB_NATIVE_S3=minio in .env is no longer read (COMPOSE_PROFILES chooses the S3 server for both runners, "
            "now seaweedfs): delete that line, and put minio in COMPOSE_PROFILES if you want it.",
        ),
        (
            {"COMPOSE_PROFILES": ""},
            "COMPOSE_PROFILES names no S3 server (seaweedfs or minio): add one, or set S3_ENDPOINT_URL to yours.",
        ),
        (
            {"COMPOSE_PROFILES": "minio seaweedfs"},
            "COMPOSE_PROFILES names seaweedfs and minio: the native runner runs one S3 server on S3_PORT, so keep one.",
        ),
    ],
)
def test_a_choice_the_native_runner_cannot_follow_is_one_sentence(values, sentence):
    with pytest.raises(LabError) as refused:
        s3_server.s3_profile(settings(**values))
    assert str(refused.value) == sentence
