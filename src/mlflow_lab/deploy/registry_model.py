"""A registered model version as files: its MLflow model directory, and where it lies in the bucket."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from mlflow_lab import registry
from mlflow_lab.errors import LabError
from mlflow_lab.settings import Settings, environ_set

# `--serve-artifacts --artifacts-destination s3://<bucket>` (the tracking server): a proxied
# location mlflow-artifacts:/<path> is the object prefix s3://<bucket>/<path>.
PROXIED = "mlflow-artifacts:"


@contextmanager
def lab_client(settings: Settings):
    """An MLflow client that reaches the lab through nginx, as `eval "$(make -s env)"` sets it up."""
    with environ_set(settings.client_env()):
        yield MlflowClient(settings.tracking_uri())


def download(settings: Settings, uri: str, destination: Path) -> registry.ModelRef:
    """The version `uri` points at now, its model directory downloaded to `destination`."""
    with lab_client(settings) as client:
        ref = registry.resolve_registered(uri, client)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(destination))
        except Exception as exc:  # noqa: BLE001 - one sentence, whatever the transport said
            raise LabError(f"could not download {ref.uri} from {client.tracking_uri}: {exc}") from None
    if not (destination / "MLmodel").is_file():
        raise LabError(f"{ref.uri} at {settings.tracking_uri()} holds no MLmodel file: it is not an MLflow model.")
    return ref


def storage_uri(settings: Settings, uri: str) -> tuple[registry.ModelRef, str]:
    """The version `uri` points at now, and the s3:// prefix of its model directory (KServe's storageUri)."""
    with lab_client(settings) as client:
        ref = registry.resolve_registered(uri, client)
        location = client.get_model_version_download_uri(ref.name, ref.version)
    if not location.startswith(PROXIED):
        raise LabError(f"{ref.uri} is stored at {location}, outside the lab's bucket: KServe cannot be pointed at it.")
    path = location[len(PROXIED) :].lstrip("/")
    return ref, f"s3://{settings['S3_BUCKET']}/{path}"
