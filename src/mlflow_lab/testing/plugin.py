"""pytest plugin (entry point `pytest11`, loaded wherever mlflow-lab is installed): a lab for a
test suite, started only when a test asks for it.

Fixtures (session scope):
- `mlflow_lab`: a `Lab` (url, user, password). The lab LAB_TEST_URL names when it is set (with
  LAB_TEST_USER and LAB_TEST_PASSWORD); otherwise a throwaway lab on free loopback ports,
  removed afterwards, also when tests fail (`--mlflow-lab-runner` or LAB_RUNNER picks the
  runner; default: Compose when a Docker engine answers, else native).
- `mlflow_lab_client`: an `MlflowClient` of that lab, with MLFLOW_TRACKING_URI, _USERNAME and
  _PASSWORD set for the session, so the fluent API (`mlflow.start_run()`) reaches it too.

A lab that does not come up fails the first test that asks for it with the reason and the
log tail of the service that failed; the other tests that need it are skipped.
"""

from __future__ import annotations

import contextlib
import os

import pytest

FAILED_START = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mlflow-lab")
    group.addoption(
        "--mlflow-lab-runner",
        default=os.environ.get("LAB_RUNNER", "auto"),
        choices=("auto", "compose", "native"),
        help="where the mlflow_lab fixture brings its throwaway lab up (default: LAB_RUNNER, else auto)",
    )


@contextlib.contextmanager
def client_environment(lab):
    """The session's MLflow client settings pointed at `lab`, undone afterwards."""
    import mlflow

    patch = pytest.MonkeyPatch()
    for key, value in lab.client_env().items():
        patch.setenv(key, value)
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(lab.url)
    try:
        yield mlflow.MlflowClient(lab.url)
    finally:
        if previous:
            mlflow.set_tracking_uri(previous)
        patch.undo()


@pytest.fixture(scope="session")
def mlflow_lab(request: pytest.FixtureRequest):
    from mlflow_lab.errors import LabError
    from mlflow_lab.testing.stacks import running_lab, throwaway_lab

    if reason := request.session.stash.get(FAILED_START, None):
        pytest.skip(f"the lab did not start: {reason.splitlines()[0]}")
    if (lab := running_lab()) is not None:
        yield lab
        return
    with contextlib.ExitStack() as stack:
        try:
            lab = stack.enter_context(throwaway_lab(request.config.getoption("mlflow_lab_runner")))
        except (LabError, RuntimeError) as exc:
            request.session.stash[FAILED_START] = str(exc)
            pytest.fail(f"the lab did not start: {exc}", pytrace=False)
        yield lab


@pytest.fixture(scope="session")
def mlflow_lab_client(mlflow_lab):
    with client_environment(mlflow_lab) as client:
        yield client
