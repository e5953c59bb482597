"""What only the Compose runner has: containers, their users and ports, restart policies,
`down`/`up` cycles, and the model API failing without taking the tracking server along."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from mlflow_lab.compose import ComposeStack
from mlflow_lab.settings import REPO_ROOT
from tests.compose.harness import INTERNALS, lab_cli

pytestmark = pytest.mark.stack
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"
PYTHON_IMAGE = "mlflow-lab/python:0.1.0"


@pytest.fixture
def compose(lab) -> ComposeStack:
    return lab.require("compose")


def containers(compose: ComposeStack) -> dict[str, dict]:
    """Service name -> `docker inspect` of its running container."""
    ids = compose.containers()
    inspected = json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True).stdout)
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}


def test_only_nginx_publishes_ports(lab, compose):
    product = subprocess.run(
        [*compose.command("-f", str(REPO_ROOT / "compose.yaml"), "config", "--format", "json")],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "COMPOSE_FILE": ""},
    )
    services = json.loads(product.stdout)["services"]
    assert {name for name, svc in services.items() if svc.get("ports")} == {"nginx"}
    # The running stack: nginx's two ports, plus what the tests' own override publishes on loopback.
    test_only = set(yaml.safe_load(INTERNALS.read_text())["services"])
    for service, container in containers(compose).items():
        published = {port: bindings for port, bindings in (container["NetworkSettings"]["Ports"] or {}).items() if bindings}
        if service == "nginx":
            assert {b["HostPort"] for bindings in published.values() for b in bindings} == {
                lab.settings["LAB_HTTP_PORT"],
                lab.settings["LAB_GRPC_PORT"],
            }
        elif published:
            assert service in test_only, f"{service} publishes {published}"
            assert all(b["HostIp"] == "127.0.0.1" for bindings in published.values() for b in bindings)


def test_every_container_runs_as_a_non_root_user(compose):
    for service, container in containers(compose).items():
        assert container["Config"]["User"] not in ("", "0", "root", "0:0"), f"{service} runs as root"
        uid = subprocess.run(
            [*compose.command("exec", "-T", service, "id", "-u")], capture_output=True, text=True, cwd=REPO_ROOT, check=True
        ).stdout.strip()
        assert uid != "0", f"{service}'s processes run as root"


def test_values_derived_from_a_non_default_port_follow_it(lab, compose):
    assert lab.settings["MLFLOW_PORT"] != "5001", "the test stack uses a non-default MLFLOW_PORT"
    env = dict(item.split("=", 1) for item in containers(compose)["model-api"]["Config"]["Env"])
    assert env["MODEL_API_TRACKING_URI"] == f"http://mlflow:{lab.settings['MLFLOW_PORT']}"
    assert lab.session().get(f"{lab.url}/v2/health/ready", timeout=10).status_code == 200


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _logged(mlflow_client, tmp_path) -> tuple[str, str, str]:
    name = f"kept-{uuid.uuid4().hex[:6]}"
    run = mlflow_client.create_run(mlflow_client.create_experiment(name))
    payload = os.urandom(100_000)
    (tmp_path / "payload.bin").write_bytes(payload)
    mlflow_client.log_artifact(run.info.run_id, str(tmp_path / "payload.bin"))
    mlflow_client.log_metric(run.info.run_id, "loss", 0.25)
    mlflow_client.create_registered_model(name)
    mlflow_client.create_model_version(name, f"{run.info.artifact_uri}/payload.bin", run.info.run_id)
    return name, run.info.run_id, _sha256(payload)


def _still_there(mlflow_client, tmp_path, name: str, run_id: str, digest: str) -> None:
    assert mlflow_client.get_run(run_id).data.metrics == {"loss": 0.25}
    assert [v.version for v in mlflow_client.search_model_versions(f"name='{name}'")] == ["1"]
    downloaded = mlflow_client.download_artifacts(run_id, "payload.bin", str(tmp_path / f"dl-{uuid.uuid4().hex}"))
    assert _sha256(Path(downloaded).read_bytes()) == digest


def _image_id(image: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", image], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_down_then_up_keeps_everything_rebuilds_nothing_and_passes_init_again(lab, compose, mlflow_client, tmp_path):
    kept = _logged(mlflow_client, tmp_path)
    image = _image_id(PYTHON_IMAGE)
    lab_cli(lab.cli_env, "down")
    assert compose.containers() == []
    up = lab_cli(lab.cli_env, "up")
    assert "MLflow is up at" in up.stdout
    assert _image_id(PYTHON_IMAGE) == image, "a second `make up` with nothing changed rebuilt the image"
    init = compose.log_tail("init", 10)
    assert "backend store schema is current" in init and f"bucket {lab.settings['S3_BUCKET']} exists" in init
    _still_there(mlflow_client, tmp_path, *kept)


def _wait_until_tracking_answers(lab, timeout: float = 120) -> None:
    """Through nginx with credentials; refused or cut connections are just 'not yet'."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if lab.session().get(lab.url + SEARCH, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"tracking did not answer through nginx within {timeout:.0f}s"
        time.sleep(1)


def test_crashed_tracking_server_is_restarted_by_its_policy(lab, compose, mlflow_client, tmp_path):
    """A crash (the process killed from outside, as by the OOM killer) brings the restart policy in.
    (`docker kill` itself counts as a manual stop on this engine, which no policy overrides.)"""
    kept = _logged(mlflow_client, tmp_path)
    container = containers(compose)["mlflow"]
    os.kill(container["State"]["Pid"], 9)
    _wait_until_tracking_answers(lab)
    assert containers(compose)["mlflow"]["RestartCount"] == container["RestartCount"] + 1
    _still_there(mlflow_client, tmp_path, *kept)


def test_model_api_down_leaves_tracking_up_and_answers_json_503(lab, compose):
    compose.run("stop", "model-api", capture=True)
    try:
        session = lab.session()
        assert session.get(lab.url + SEARCH, timeout=10).status_code == 200
        for method, path in (
            ("post", "/models/wine-quality/invocations"),
            ("post", "/v2/models/wine-quality/infer"),
            ("get", "/v2/health/ready"),
        ):
            response = session.request(method, lab.url + path, json={}, timeout=10)
            assert response.status_code == 503, (path, response.text)
            assert "model API is not available" in response.json()["error"] and len(response.text) < 200
        # nginx itself restarts fine while the model API is away (no lookup at start).
        compose.run("restart", "nginx", capture=True)
        _wait_until_tracking_answers(lab)
    finally:
        compose.run("up", "--detach", "--wait", capture=True)
    assert lab.session().get(f"{lab.url}/v2/health/ready", timeout=10).status_code == 200
