"""`lab k8s inferenceservice URI`: the InferenceService that serves a registry version with the
lab's runtime (deploy/k8s/kserve).

KServe cannot resolve `models:/` URIs, so the reference is resolved here to the version's
model directory in the bucket (storageUri). Printing it again after a promotion gives the new
storageUri, and `kubectl apply` rolls the service over to it.
"""

from __future__ import annotations

import re

import yaml

from mlflow_lab.deploy import registry_model
from mlflow_lab.errors import LabError
from mlflow_lab.settings import REPO_ROOT, Settings

RUNTIME_FILE = REPO_ROOT / "deploy" / "k8s" / "kserve" / "cluster-serving-runtime.yaml"
# The ServiceAccount whose Secret carries the bucket's credentials and KServe's s3-* annotations.
SERVICE_ACCOUNT = "mlflow-lab-models"


def runtime() -> dict:
    return yaml.safe_load(RUNTIME_FILE.read_text())


def service_name(model: str) -> str:
    """A DNS-1035 label from the model's name (an InferenceService's name becomes a host name)."""
    name = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"model-{name}".rstrip("-")
    return name[:63].rstrip("-")


def inference_service(settings: Settings, uri: str, name: str | None = None, namespace: str | None = None) -> dict:
    ref, storage = registry_model.storage_uri(settings, uri)
    served = runtime()
    [model_format] = served["spec"]["supportedModelFormats"]
    metadata: dict = {
        "name": name or service_name(ref.name),
        "labels": {"app.kubernetes.io/part-of": "mlflow-lab"},
        "annotations": {"mlflow-lab/model-uri": uri, "mlflow-lab/model-version": ref.uri},
    }
    if namespace:
        metadata["namespace"] = namespace
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", metadata["name"]):
        raise LabError(f"{metadata['name']!r} cannot name an InferenceService: use lowercase letters, digits and '-'.")
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {
            "predictor": {
                "serviceAccountName": SERVICE_ACCOUNT,
                "model": {
                    "modelFormat": {"name": model_format["name"], "version": model_format["version"]},
                    "protocolVersion": served["spec"]["protocolVersions"][0],
                    "runtime": served["metadata"]["name"],
                    "storageUri": storage,
                },
            }
        },
    }
