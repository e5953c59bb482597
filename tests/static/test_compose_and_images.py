"""Compose and the Dockerfiles, checked statically (the stack tests also run them for real)."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mlflow_lab.deploy import model_image
from mlflow_lab.settings import ENV_EXAMPLE, PASSWORD_VARS, REPO_ROOT, Settings, parse_env_file

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
    stages = set()
    for image, stage in re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I):
        argument = re.fullmatch(r"\$\{(\w+)\}", image)
        assert argument or image in stages, f"FROM {image}: a base image must be a build argument (or an earlier stage)"
        stages.add(stage)
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M), "the final stage must not run as root"


@pytest.mark.parametrize("name", sorted(IMAGE_SETTINGS))
def test_image_settings_are_pinned_debian_bookworm_images(name):
    image = IMAGE_SETTINGS[name]
    assert re.search(r":v?\d+\.\d+", image) and not image.endswith(":latest"), f"{name}={image} is not pinned"
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
    # The exporters' health is what Prometheus sees (`up`, alert ServiceDown); some of their
    # official images have no shell or client to check themselves with.
    long_running = [name for name, svc in services.items() if svc.get("restart") != "no" and not name.endswith("-exporter")]
    assert all("healthcheck" in services[name] for name in long_running)


def test_jobs_are_on_demand_and_go_through_nginx():
    services = compose()["services"]
    jobs = {name: svc for name, svc in services.items() if "jobs" in svc.get("profiles", [])}
    assert set(jobs) == {"train", "promote", "score"}
    for svc in jobs.values():
        assert svc["environment"]["MLFLOW_TRACKING_URI"] == "http://nginx:8080"
        assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(svc["environment"])
        assert svc["depends_on"]["nginx"]["condition"] == "service_healthy"


# The lab's Python images: one target of one Dockerfile per role (services/mlflow/Dockerfile).
ROLE_TARGETS = {"init": "tracking-server", "mlflow": "tracking-server", "model-api": "model-api"} | {
    job: "jobs" for job in ("train", "promote", "score")
}
PYTHON_DOCKERFILE = REPO_ROOT / "services" / "mlflow" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "requirements"


def stages(dockerfile: Path) -> dict[str, str]:
    """Stage name -> its text (from its FROM line to the next)."""
    parts = re.split(r"^(?=FROM\s)", dockerfile.read_text(), flags=re.M)
    return {m.group(1): part for part in parts if (m := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", part, re.I))}


def test_each_role_has_its_own_image_a_target_of_one_dockerfile():
    services = compose()["services"]
    found = stages(PYTHON_DOCKERFILE)
    images = {}
    for service, target in ROLE_TARGETS.items():
        image = services[service]["image"]
        # A service without a build section runs the image another service builds (init: mlflow's).
        builders = [s["build"] for s in services.values() if "build" in s and s["image"] == image]
        build = services[service].get("build") or builders[0]
        assert (REPO_ROOT / build["context"] / build["dockerfile"]).resolve() == PYTHON_DOCKERFILE, service
        assert build["target"] == target, service
        images.setdefault(target, set()).add(image)
        # Each role's image runs as the lab's unprivileged user, set in its own stage.
        assert re.search(r"^USER\s+10001:10001$", found[target], re.M), f"target {target} must end as the lab's user"
    assert all(len(names) == 1 for names in images.values()), images  # one image per target...
    assert len({name for names in images.values() for name in names}) == len(images), images  # ...and per role


def requirement_files_installed(stage_text: str) -> set[str]:
    return set(re.findall(r"source=requirements/([\w.-]+\.txt)", stage_text))


def test_role_lists_are_the_projects_dependencies_and_installed_per_role_under_the_lock():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    listed = project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"]
    assert sorted(listed) == sorted(f"requirements/{p.name}" for p in REQUIREMENTS.glob("*.txt")), "pyproject = role files"
    found = stages(PYTHON_DOCKERFILE)
    used = set().union(*(requirement_files_installed(text) for text in found.values()))
    assert used == {p.name for p in REQUIREMENTS.glob("*.txt")} - {"native.txt"}
    # Only what the native runner needs (supervisord, the `weed` binary) is in no image.
    assert "native.txt" not in PYTHON_DOCKERFILE.read_text()
    for text in found.values():
        for command in re.findall(r"pip install [^\n]*-r [^\n]*", text):
            assert "-c /requirements/lock.txt" in command, command
    # Each role's own list reaches only that role's stage (and those built FROM it).
    assert requirement_files_installed(found["tracking-server"]) == {"tracking-server.txt"}
    assert requirement_files_installed(found["model-api"]) == {"model-api.txt"}
    assert requirement_files_installed(found["jobs"]) == {"jobs.txt"}
    assert re.match(r"FROM models\s", found["model-api"]) and re.match(r"FROM models\s", found["jobs"])
    assert re.match(r"FROM mlflow\s", found["tracking-server"]) and re.match(r"FROM mlflow\s", found["models"])


def test_model_images_build_from_the_model_api_image():
    secrets = {name: "x" for name in PASSWORD_VARS}
    settings = Settings({**parse_env_file(ENV_EXAMPLE), **secrets})
    assert model_image.lab_image(settings) == compose()["services"]["model-api"]["image"]
    assert re.search(r"^FROM \$\{LAB_IMAGE\}$", model_image.DOCKERFILE.read_text(), re.M)
