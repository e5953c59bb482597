"""Session fixture: a real lab stack, reached through nginx with basic auth, once per runner.

Every stack test runs against the native runner (host processes on free loopback ports, in a
temporary state directory) and against Compose (containers on the Docker engine, brought up
by `lab up` with a throwaway .env and project name). LAB_TEST_RUNNERS picks some ("native",
"compose"); Compose is skipped, saying why, where no Docker engine answers. LAB_TEST_URL (with
LAB_TEST_USER and LAB_TEST_PASSWORD) tests an already running stack instead; checks that need
the stack's internals (SQL, bucket, restarts, logs) are skipped then.

When a stack cannot start, the first test that needs it fails with the reason and the log
tail of the service that failed; every other test of that runner is skipped, not repeated.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
import requests

from mlflow_lab.compose import ComposeStack
from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.runners import docker_engine_answers
from mlflow_lab.settings import REPO_ROOT, Settings
from mlflow_lab.storage import s3_client
from tests.native.harness import ephemeral_stack

RUNNERS = os.environ.get("LAB_TEST_RUNNERS", "native compose").split()


@dataclass
class Lab:
    url: str
    user: str
    password: str
    runner: str = "external"
    settings: Settings | None = None
    stack: NativeStack | ComposeStack | None = None
    cli_env: dict[str, str] = field(default_factory=dict)  # drives `lab ...` against this stack
    saved_logs: dict[str, str] = field(default_factory=dict)  # tails kept when tests failed

    def session(self, auth: bool = True) -> requests.Session:
        session = requests.Session()
        if auth:
            session.auth = (self.user, self.password)
        return session

    def client_env(self) -> dict[str, str]:
        """What `eval "$(make -s env)"` exports for this stack."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": self.user, "MLFLOW_TRACKING_PASSWORD": self.password}

    # --- the stack's internals, for checks a user cannot make through nginx -----------
    def require_internals(self) -> NativeStack | ComposeStack:
        if self.stack is None:
            pytest.skip("needs the stack's internals (started by the fixture, not LAB_TEST_URL)")
        return self.stack

    def require(self, runner: str) -> NativeStack | ComposeStack:
        if self.runner != runner:
            pytest.skip(f"{runner} runner only")
        return self.require_internals()

    def address(self, service: str, setting: str) -> tuple[str, int]:
        """Host and port where the test reaches a service's port (given by its setting)."""
        stack = self.require_internals()
        if isinstance(stack, ComposeStack):
            internal = {"POSTGRES_PORT": 5432}.get(setting) or self.settings.int(setting)
            return stack.address(service, internal)
        return "127.0.0.1", self.settings.int(setting)

    def s3_settings(self) -> Settings:
        host, port = self.address("s3", "S3_PORT")
        return Settings({**self.settings.as_env(), "S3_ENDPOINT_URL": f"http://{host}:{port}"})

    def s3(self):
        return s3_client(self.s3_settings())

    def postgres(self):
        host, port = self.address("postgres", "POSTGRES_PORT")
        s = self.settings
        return psycopg2.connect(
            host=host, port=port, user=s["POSTGRES_USER"], password=s["POSTGRES_PASSWORD"], dbname=s["POSTGRES_DB"]
        )

    def restart(self, *services: str) -> None:
        stack = self.require_internals()
        if isinstance(stack, ComposeStack):
            stack.run("restart", *services, capture=True)
            stack.run("up", "--detach", "--wait", capture=True)  # until healthy again
        else:
            stack.restart(*services)

    def log_tail(self, service: str, lines: int = 30) -> str:
        return self.require_internals().log_tail(service, lines)


@contextlib.contextmanager
def _native(request):
    # Logs of a failed session stay on disk; pytest_terminal_summary prints their tails.
    with ephemeral_stack(keep_state=lambda: request.session.testsfailed > 0) as stack:
        s = stack.settings
        env = {**os.environ, **s.as_env(), "LAB_RUNNER": "native", "LAB_STATE_DIR": str(stack.state), "LAB_ENV_FILE": os.devnull}
        yield Lab(s.tracking_uri("127.0.0.1"), s["LAB_USER"], s["LAB_PASSWORD"], "native", s, stack, env)


@contextlib.contextmanager
def _compose(request):
    if not docker_engine_answers():
        pytest.skip("no Docker engine answers: the Compose runner is not tested here")
    from tests.compose.harness import compose_stack

    with compose_stack() as (stack, s, env):
        yield Lab(s.tracking_uri("127.0.0.1"), s["LAB_USER"], s["LAB_PASSWORD"], "compose", s, stack, env)


STARTERS = {"native": _native, "compose": _compose}
_START_FAILED: dict[str, str] = {}


@pytest.fixture(scope="session", params=RUNNERS)
def lab(request) -> Lab:
    if url := os.environ.get("LAB_TEST_URL"):
        yield Lab(url.rstrip("/"), os.environ["LAB_TEST_USER"], os.environ["LAB_TEST_PASSWORD"])
        return
    runner = request.param
    if runner in _START_FAILED:
        pytest.skip(f"the {runner} stack did not start (see the first error of this runner)")
    try:
        context = STARTERS[runner](request)
        lab = context.__enter__()
    except (LabError, RuntimeError) as exc:
        _START_FAILED[runner] = str(exc)
        pytest.fail(f"the {runner} stack did not start: {exc}", pytrace=False)
    request.config._lab_stacks = getattr(request.config, "_lab_stacks", []) + [lab]
    try:
        yield lab
    finally:
        if request.session.testsfailed:
            for name in declaration.services(lab.settings.as_env(), lab.stack.profiles()):  # compose.yaml's
                with contextlib.suppress(Exception):
                    lab.saved_logs[name] = lab.log_tail(name, 25)
        context.__exit__(None, None, None)


@contextlib.contextmanager
def client_for(url: str, user: str, password: str):
    """An MLflow client (and the fluent API) configured the way `eval "$(make -s env)"` configures them."""
    import mlflow

    patch = pytest.MonkeyPatch()
    env = {"MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
    for key, value in env.items():
        patch.setenv(key, value)
    mlflow.set_tracking_uri(url)
    try:
        yield mlflow.MlflowClient(url)
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def mlflow_client(lab):
    with client_for(lab.url, lab.user, lab.password) as client:
        yield client


@pytest.fixture(scope="session")
def mlflow2_lab(tmp_path_factory):
    """A native lab written by MLflow 2.x, then brought up by this MLflow, and a backup archive
    taken before the upgrade (tests/upgrade/harness.py); one per session, as it is slow to make."""
    if "native" not in RUNNERS:
        pytest.skip("the MLflow 2.x lab is made with the native runner")
    from tests.upgrade.harness import mlflow2_lab

    with mlflow2_lab(tmp_path_factory.mktemp("mlflow2")) as made:
        yield made


@pytest.fixture
def data_dir(lab, tmp_path) -> Path:
    """Where a job of this runner reads and writes relative `data/...` paths: the checkout's
    ./data for Compose (mounted into job containers), a temporary folder natively."""
    return REPO_ROOT if lab.runner == "compose" else tmp_path


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items):
    """After pytest has grouped the tests by runner (the session fixture's parameter), move
    the ones that replace the lab to the end of their runner's group."""
    yield
    group_of: dict[object, int] = {}
    for item in items:
        runner = item.callspec.params.get("lab") if hasattr(item, "callspec") else None
        group_of.setdefault(runner, len(group_of))
    items.sort(
        key=lambda item: (
            group_of[item.callspec.params.get("lab") if hasattr(item, "callspec") else None],
            item.get_closest_marker("replaces_lab") is not None,
        )
    )


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stacks = getattr(config, "_lab_stacks", [])
    if not stacks or not terminalreporter.stats.get("failed"):
        return
    for lab in stacks:
        terminalreporter.section(f"lab service logs (tail), {lab.runner} runner")
        for name, tail in lab.saved_logs.items():
            if tail.strip():
                terminalreporter.write_line(f"==> {name} <==\n{tail}")
