"""Compose and the Dockerfiles, checked statically (the stack tests also run them for real)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlflow_lab.deploy import model_image
from mlflow_lab.settings import ENV_EXAMPLE, REPO_ROOT, parse_env_file

BIN = Path(sys.executable).parent


def compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())


# Every image compose.yaml builds, wherever its folder lives, and the model image built on the lab's.
DOCKERFILES = sorted(
    {
        (REPO_ROOT / spec["build"]["context"] / spec["build"].get("dockerfile", "Dockerfile")).resolve()
        for spec in compose()["services"].values()
        if "build" in spec
    }
    | {model_image.DOCKERFILE}
)


def test_compose_matches_the_compose_specification():
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", REPO_ROOT / "compose.yaml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_lints_clean(dockerfile):
    result = subprocess.run([BIN / "hadolint", "--failure-threshold", "info", dockerfile], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


IMAGE_SETTINGS = {name: value for name, value in parse_env_file(ENV_EXAMPLE).items() if name.endswith("_IMAGE")}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_are_settings_and_the_images_unprivileged(dockerfile):
    text = dockerfile.read_text()
    for image in re.findall(r"^FROM\s+(\S+)", text, re.M):
        argument = re.fullmatch(r"\$\{(\w+)\}", image)
        assert argument or re.fullmatch(r"\w+", image), f"FROM {image}: a base image must be a build argument"
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M), "the final stage must not run as root"


@pytest.mark.parametrize("name", sorted(IMAGE_SETTINGS))
def test_image_settings_are_pinned_debian_bookworm_images(name):
    image = IMAGE_SETTINGS[name]
    assert re.search(r":\d+\.\d+", image) and not image.endswith(":latest"), f"{name}={image} is not pinned"
    assert "alpine" not in image, f"{name}={image}: one Linux family for all, Debian bookworm"


def test_only_nginx_is_published():
    services = compose()["services"]
    assert [name for name, svc in services.items() if svc.get("ports")] == ["nginx"]
    assert all(
        ":" in image and not image.endswith(":latest")
        for svc in services.values()
        if (image := svc.get("image")) and "${" not in image
    )


def test_init_gates_the_tracking_server():
    services = compose()["services"]
    assert services["mlflow"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    long_running = [name for name, svc in services.items() if svc.get("restart") != "no"]
    assert all("healthcheck" in services[name] for name in long_running)


def test_jobs_are_on_demand_and_go_through_nginx():
    services = compose()["services"]
    jobs = {name: svc for name, svc in services.items() if "jobs" in svc.get("profiles", [])}
    assert set(jobs) == {"train", "promote", "score"}
    for svc in jobs.values():
        assert svc["environment"]["MLFLOW_TRACKING_URI"] == "http://nginx:8080"
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(svc["environment"])
        assert svc["depends_on"]["nginx"]["condition"] == "service_healthy"
