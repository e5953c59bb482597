"""Session fixture: a real lab stack, reached through nginx with basic auth.

By default it starts the native runner on free loopback ports in a temporary state
directory, with the moto S3 stand-in (so the S3 code path runs: bucket, keys, endpoint,
path-style addressing), and stops it at the end. Set LAB_TEST_URL (plus LAB_TEST_USER
and LAB_TEST_PASSWORD) to test an already running stack, e.g. a Compose one; checks that
need the stack's internals (SQL, S3, restarts) are skipped then.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import requests

from mlflow_lab.native.ephemeral import ephemeral_stack
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import Settings

SERVICE_LOGS = ("postgres", "s3", "init", "mlflow", "nginx")


@dataclass
class Lab:
    url: str
    user: str
    password: str
    settings: Settings | None = None
    stack: NativeStack | None = None

    def session(self, auth: bool = True) -> requests.Session:
        session = requests.Session()
        if auth:
            session.auth = (self.user, self.password)
        return session

    def client_env(self) -> dict[str, str]:
        """What `eval "$(make -s env)"` exports for this stack."""
        return {"MLFLOW_TRACKING_URI": self.url, "MLFLOW_TRACKING_USERNAME": self.user,
                "MLFLOW_TRACKING_PASSWORD": self.password}

    def require_internals(self) -> NativeStack:
        if self.stack is None:
            pytest.skip("needs the stack's internals (started by the fixture, not LAB_TEST_URL)")
        return self.stack


@pytest.fixture(scope="session")
def lab(request) -> Lab:
    if url := os.environ.get("LAB_TEST_URL"):
        yield Lab(url.rstrip("/"), os.environ["LAB_TEST_USER"], os.environ["LAB_TEST_PASSWORD"])
        return
    # Logs of a failed session stay on disk; pytest_terminal_summary prints their tails.
    with ephemeral_stack(keep_state=lambda: request.session.testsfailed > 0) as stack:
        request.config._lab_stack = stack
        settings = stack.settings
        yield Lab(settings.tracking_uri("127.0.0.1"), settings["LAB_USER"], settings["LAB_PASSWORD"], settings, stack)


@pytest.fixture(scope="session")
def mlflow_client(lab):
    """An MLflow client (and the fluent API) configured the way `eval "$(make -s env)"` configures them."""
    import mlflow

    patch = pytest.MonkeyPatch()
    for key, value in lab.client_env().items():
        patch.setenv(key, value)
    mlflow.set_tracking_uri(lab.url)
    yield mlflow.MlflowClient(lab.url)
    patch.undo()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stack = getattr(config, "_lab_stack", None)
    if stack is None or not terminalreporter.stats.get("failed"):
        return
    terminalreporter.section("lab service logs (tail)")
    for name in SERVICE_LOGS:
        terminalreporter.write_line(f"==> {name} <==")
        terminalreporter.write_line(stack.log_tail(name, 25))
    terminalreporter.write_line(f"(full logs kept in {stack.logs})")
