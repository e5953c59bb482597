"""Beyond one machine: the model image (SageMaker's contract), the KServe runtime and the
InferenceService, each container run under Docker exactly as its platform starts it, with no
network, and compared with in-process pyfunc predictions."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from mlflow_lab.deploy import k8s
from mlflow_lab.jobs import promote, sample_input, train_psystock, train_wine
from mlflow_lab.storage import s3_client
from mlflow_lab.testing.stacks import lab_cli
from tests.deploy.harness import Container
from tests.stack.payloads import v2_body

pytestmark = pytest.mark.stack
# Registered under names of their own, so the model API's tests keep their version numbers.
MODELS = {"deploy-wine": "wine-quality", "deploy-psystock": "psystock"}  # registered name -> sample kind


@pytest.fixture(scope="module")
def deployed(lab, mlflow_client):
    """Version 1 of each model in Production. The containers under test are the same whichever
    runner holds the registry, so they run once: in the Compose session, whose images they use."""
    lab.require("compose")
    train_wine.train(experiment="deploy-wine", register_as="deploy-wine", n_iter=2)
    train_psystock.train(experiment="deploy-psystock", register_as="deploy-psystock", days=400, n_estimators=20)
    for name in MODELS:
        promote.promote(mlflow_client, name, "1", force=True)
    yield mlflow_client
    built = subprocess.run(
        ["docker", "images", "-q", "--filter", "reference=mlflow-lab/model-deploy-*"], capture_output=True, text=True
    )
    if built.stdout.split():
        subprocess.run(["docker", "rmi", "--force", *set(built.stdout.split())], capture_output=True)


def cli_env(lab) -> dict[str, str]:
    """`lab ...` against this stack; the lab's image is built with host-built wheels, as the Compose tests do."""
    return {**lab.cli_env, "LAB_BUILD_OFFLINE": "true"}


def in_process(model_uri: str, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(mlflow.pyfunc.load_model(model_uri).predict(frame), dtype="float64").reshape(-1)


def predictions(answer) -> np.ndarray:
    assert answer.status == 200, answer.body
    body = answer.json()
    data = body["outputs"][0]["data"] if "outputs" in body else body["predictions"]
    return np.asarray(data, dtype="float64").reshape(-1)


@pytest.mark.parametrize("name", MODELS)
def test_model_image_serves_its_version_with_no_network_under_sagemakers_contract(lab, deployed, name):
    built = lab_cli(cli_env(lab), "model-image", f"models:/{name}/Production")
    tag = built.stdout.strip()
    assert tag == f"mlflow-lab/model-{name}:1"
    labels = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{json .Config.Labels}}", tag], capture_output=True, text=True, check=True
        ).stdout
    )
    assert labels["org.opencontainers.image.source"] == f"models:/{name}/1"

    frame = sample_input.build(MODELS[name], rows=20, seed=3)
    expected = in_process(f"models:/{name}/1", frame)
    with Container(tag, args=["serve"]) as container:  # `docker run IMAGE serve`, as SageMaker starts it
        seconds = container.wait_until("/ping", timeout=120)
        print(f"{tag}: /ping 200 {seconds:.1f} s after docker run")
        assert container.user_id() != "0"
        split = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
        np.testing.assert_allclose(predictions(container.request("POST", "/invocations", split)), expected, rtol=1e-6)
        csv = container.request("POST", "/invocations", frame.to_csv(index=False), content_type="text/csv")
        np.testing.assert_allclose(predictions(csv), expected, rtol=1e-6)
        v2 = container.request("POST", f"/v2/models/{name}/infer", v2_body(frame))
        np.testing.assert_allclose(predictions(v2), expected, rtol=1e-6)
        assert v2.json()["model_version"] == "1"
        bad = container.request("POST", "/invocations", "{not json")
        assert bad.status == 400 and set(bad.json()) == {"error"} and "Traceback" not in bad.body
        assert container.request("GET", "/ping").status == 200, "still serving after a bad request"


def test_model_image_of_a_missing_model_is_one_sentence_and_no_image(lab, deployed):
    result = lab_cli(cli_env(lab), "model-image", "models:/no-such-model/Production", check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: model 'no-such-model' is not registered at {lab.settings.tracking_uri()}."
    ]
    listed = subprocess.run(["docker", "images", "-q", "mlflow-lab/model-no-such-model"], capture_output=True, text=True)
    assert listed.stdout.strip() == ""


def inference_service(lab, uri: str) -> dict:
    return yaml.safe_load(lab_cli(cli_env(lab), "k8s", "inferenceservice", uri).stdout)


def download_storage_uri(lab, storage_uri: str, destination: Path) -> Path:
    """What KServe's storage initializer does: every object under the prefix, to /mnt/models."""
    bucket, _, prefix = storage_uri.removeprefix("s3://").partition("/")
    assert bucket == lab.settings["S3_BUCKET"]
    client = s3_client(lab.s3_settings())
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        for o in page.get("Contents", [])
    ]
    assert keys, f"nothing in the bucket under {storage_uri}"
    for key in keys:
        target = destination / key[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        client.download_file(bucket, key, str(target))
    return destination


# KServe's V2 gRPC ModelReady, asked on the runtime's gRPC port from inside its container.
GRPC_MODEL_READY = """
import sys, grpc
from mlserver.grpc import dataplane_pb2 as pb, dataplane_pb2_grpc as rpc
stub = rpc.GRPCInferenceServiceStub(grpc.insecure_channel("127.0.0.1:8081"))
print(stub.ModelReady(pb.ModelReadyRequest(name=sys.argv[1]), timeout=10).ready)
"""


def runtime_container(lab, model_dir: Path, service: str) -> Container:
    """The ClusterServingRuntime's container as `lab k8s render kserve` prints it (the image tagged
    by deploy/k8s/components/images), started as KServe starts it for InferenceService `service`."""
    [runtime] = [obj for obj in k8s.render(lab.settings, "kserve") if obj["kind"] == "ClusterServingRuntime"]
    [spec] = runtime["spec"]["containers"]
    security = spec["securityContext"]
    return Container(
        spec["image"],
        entrypoint=spec["command"],
        args=[arg.replace("{{.Name}}", service) for arg in spec["args"]],
        env={item["name"]: item["value"] for item in spec.get("env", [])},
        read_only_mounts={model_dir: "/mnt/models"},
        read_only_root=security["readOnlyRootFilesystem"],
        user=f"{security['runAsUser']}:{security['runAsGroup']}",
    )


@pytest.fixture(scope="module")
def downloaded(lab, deployed, tmp_path_factory):
    """Each model's InferenceService, and its storageUri downloaded as the storage initializer would."""
    lab.require_internals()
    # The runtime's image is the lab's: building a model image brings it up to date first.
    lab_cli(cli_env(lab), "model-image", "models:/deploy-wine/1")
    found = {}
    for name in MODELS:
        service = inference_service(lab, f"models:/{name}/Production")
        folder = tmp_path_factory.mktemp(name)
        found[name] = service, download_storage_uri(lab, service["spec"]["predictor"]["model"]["storageUri"], folder)
        folder.chmod(0o755)
    return found


@pytest.mark.parametrize("name", MODELS)
def test_kserve_runtime_serves_the_downloaded_model_as_kserve_starts_it(lab, downloaded, name):
    service, model_dir = downloaded[name]
    model = service["spec"]["predictor"]["model"]
    assert (model["runtime"], model["protocolVersion"], model["modelFormat"]) == (
        "mlflow-lab-v2",
        "v2",
        {"name": "mlflow", "version": "3"},
    )
    assert yaml.safe_load((model_dir / "MLmodel").read_text())["mlflow_version"] == mlflow.__version__  # written by MLflow 3.17

    isvc = service["metadata"]["name"]
    frame = sample_input.build(MODELS[name], rows=15, seed=9)
    expected = in_process(str(model_dir), frame)
    with runtime_container(lab, model_dir, isvc) as container:
        container.wait_until("/v2/health/ready")
        assert container.request("GET", "/v2/health/live").status == 200
        assert container.user_id() == "10001"
        metadata = container.request("GET", f"/v2/models/{isvc}").json()
        assert metadata["name"] == isvc and metadata["platform"] == "mlflow"
        assert [i["name"] for i in metadata["inputs"]] == list(frame.columns)
        np.testing.assert_allclose(
            predictions(container.request("POST", f"/v2/models/{isvc}/infer", v2_body(frame))), expected, rtol=1e-6
        )
        assert container.request("POST", f"/v2/models/{isvc}/infer", {"inputs": []}).status in (400, 422)
        assert container.request("GET", "/v2/health/ready").status == 200
        assert container.python(GRPC_MODEL_READY, isvc) == "True", "V2 over gRPC on 8081"


def test_kserve_runtime_never_serves_a_model_it_cannot_load(lab, downloaded, tmp_path):
    _, model_dir = downloaded["deploy-wine"]
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    for path in broken.iterdir():
        if path.suffix in (".skops", ".pkl"):
            path.write_bytes(b"not a model")
    broken.chmod(0o755)
    with runtime_container(lab, broken, "wine") as container:
        deadline = time.monotonic() + 120
        while "cannot serve wine from /mnt/models" not in container.logs():
            assert time.monotonic() < deadline, container.logs()
            time.sleep(0.5)
        assert container.running(), "stays up, reporting not ready"
        assert container.request("GET", "/v2/health/live").status == 200
        assert container.request("GET", "/v2/health/ready").status != 200
        assert container.request("GET", "/ping").status == 503
        refused = container.request("POST", "/v2/models/wine/infer", v2_body(sample_input.build("wine-quality", rows=1, seed=0)))
        assert refused.status == 404 and set(refused.json()) == {"error"}


def test_inferenceservice_follows_promotions_and_refuses_unknown_references(lab, deployed):
    before = inference_service(lab, "models:/deploy-psystock/Production")
    assert before["metadata"]["annotations"]["mlflow-lab/model-version"] == "models:/deploy-psystock/1"
    train_psystock.train(experiment="deploy-psystock", register_as="deploy-psystock", days=300, n_estimators=10)
    promote.promote(deployed, "deploy-psystock", "2", force=True)
    after = inference_service(lab, "models:/deploy-psystock/Production")
    assert after["metadata"]["annotations"]["mlflow-lab/model-version"] == "models:/deploy-psystock/2"
    assert after["spec"]["predictor"]["model"]["storageUri"] != before["spec"]["predictor"]["model"]["storageUri"]
    assert after["metadata"]["name"] == before["metadata"]["name"] == "deploy-psystock", "same service: kubectl apply rolls it"

    where = lab.settings.tracking_uri()  # how the CLI reaches the lab
    for uri, sentence in {
        "models:/nothing-here/Production": f"model 'nothing-here' is not registered at {where}.",
        "models:/deploy-psystock/Staging": f"model 'deploy-psystock' has no version in stage 'Staging' at {where}.",
        "models:/deploy-psystock@nobody": f"model 'deploy-psystock' has no alias @nobody at {where}.",
    }.items():
        result = lab_cli(cli_env(lab), "k8s", "inferenceservice", uri, check=False)
        assert (result.returncode, result.stdout, result.stderr.strip()) == (1, "", f"error: {sentence}"), uri
