"""Compose and the native runner are one stack: a piece in only one of them is drift."""

import re
import subprocess

from mlflow_lab.native import ospackages
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import ENV_EXAMPLE, REPO_ROOT, Settings, parse_env_file
from tests.static.test_compose_and_images import compose

# Compose service -> how the native runner provides it.
NATIVE_COUNTERPART = {"postgres": "postgres", "s3": "s3", "minio": "s3", "mlflow": "mlflow", "nginx": "nginx", "init": "init step",
                      "train": "job", "promote": "job", "score": "job", "model-api": "model-api"}
# Variables that only exist in the container world (documented as such in .env.example).
COMPOSE_ONLY = {"COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES", "LAB_BUILD_CA_BUNDLE"}
NATIVE_ONLY = {"POSTGRES_PORT", "LAB_NATIVE_S3"}


def compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+)", (REPO_ROOT / "compose.yaml").read_text()))


def native_services() -> set[str]:
    settings = Settings({**parse_env_file(ENV_EXAMPLE), "LAB_NATIVE_S3": "minio"})
    return {svc.name for svc in NativeStack(settings, REPO_ROOT / ".lab-drift").services()} | {"init step", "job"}


def test_every_compose_service_has_a_native_counterpart():
    services = set(compose()["services"])
    assert services <= set(NATIVE_COUNTERPART), f"no native counterpart declared for {services - set(NATIVE_COUNTERPART)}"
    assert {NATIVE_COUNTERPART[name] for name in services} <= native_services()


def test_every_compose_variable_is_in_env_example():
    documented = set(parse_env_file(ENV_EXAMPLE))
    assert compose_variables() - documented == set()


def test_every_env_example_variable_is_used_by_a_runner():
    used_natively = "\n".join(p.read_text() for p in (REPO_ROOT / "src").rglob("*.py"))
    used_natively += (REPO_ROOT / "services" / "nginx" / "entrypoint.sh").read_text()
    for name in parse_env_file(ENV_EXAMPLE):
        in_compose, in_native = name in compose_variables(), name in used_natively
        if name in COMPOSE_ONLY:
            assert in_compose or name.startswith("COMPOSE_"), name
        elif name in NATIVE_ONLY:
            assert in_native, name
        else:
            assert in_compose and in_native, f"{name}: compose={in_compose} native={in_native}"


def test_both_runners_use_the_same_entrypoints():
    services = compose()["services"]
    assert services["init"]["command"][-1] == "mlflow_lab.services.init_stack"
    assert services["model-api"]["command"][-1] == "mlflow_lab.services.model_api"
    dockerfile = (REPO_ROOT / "services/mlflow/Dockerfile").read_text()
    assert '"mlflow_lab.services.tracking_server"' in dockerfile
    nginx_dockerfile = (REPO_ROOT / "services/nginx/Dockerfile").read_text()
    assert "COPY nginx.conf.template entrypoint.sh" in nginx_dockerfile
    runner = (REPO_ROOT / "src/mlflow_lab/native/runner.py").read_text()
    for piece in ("mlflow_lab.services.tracking_server", "mlflow_lab.services.init_stack", "mlflow_lab.services.model_api",
                  "entrypoint.sh", "nginx.conf.template"):
        assert piece in runner


def test_job_services_run_the_commands_the_native_runner_runs():
    """`lab job <name>` runs `python -m mlflow_lab.jobs <name>` natively and the <name> service under Compose."""
    from mlflow_lab.cli import COMPOSE_JOBS
    from mlflow_lab.jobs.__main__ import app

    commands = {info.name for info in app.registered_commands} | {group.name for group in app.registered_groups}
    services = compose()["services"]
    for name in COMPOSE_JOBS:
        assert services[name]["entrypoint"] == ["lab-job", name]
        assert name in commands


def test_postgres_major_version_matches():
    image = parse_env_file(ENV_EXAMPLE)["POSTGRES_IMAGE"]
    compose_major = re.search(r"postgres:(\d+)", image).group(1)
    version = subprocess.run([ospackages.postgres_bin("postgres"), "--version"], capture_output=True, text=True).stdout
    assert re.search(r"\) (\d+)", version).group(1) == compose_major, (image, version)
