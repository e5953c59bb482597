"""Session fixture: a real lab stack, reached through nginx with basic auth.

Stack tests come in two kinds:
- **behaviour** tests (unmarked): what the lab does for its users. Both runners run the same
  programs (the same images' code, nginx template and jobs), so these run once, on the
  behaviour runner: Compose when a Docker engine answers, else native (BALANCED_TO_NATIVE's
  modules natively whenever the native runner runs).
- **contract** tests (`@pytest.mark.contract`, or `contract("native")` for one runner): what
  differs between the runners (start, supervision, storage, jobs, teardown); they run on every
  runner of LAB_TEST_RUNNERS (default "native compose"; Compose is skipped, saying why, where
  no Docker engine answers). LAB_TEST_RUNNERS=native runs everything natively.

LAB_TEST_URL (with LAB_TEST_USER and LAB_TEST_PASSWORD) tests an already running lab instead;
checks that need the stack's internals (SQL, bucket, restarts, logs) are skipped then.

The stacks come from the lab's test kit (mlflow_lab.testing). When a stack cannot start, the
first test that needs it fails with the reason and the log tail of the service that failed;
every other test of that runner is skipped, not repeated.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psycopg2
import pytest

from mlflow_lab.errors import LabError
from mlflow_lab.native import declaration
from mlflow_lab.runners import Runner, docker_engine_answers
from mlflow_lab.settings import REPO_ROOT, Settings
from mlflow_lab.storage import s3_client
from mlflow_lab.testing import stacks
from mlflow_lab.testing.plugin import client_environment
from tests.stack.people import TEST_OVERRIDES

# A user's project with a suite of its own, run by tests/kit in its own environment.
collect_ignore = ["kit/example_project"]
EXTERNAL = stacks.running_lab()
RUNNERS = ["external"] if EXTERNAL else os.environ.get("LAB_TEST_RUNNERS", "native compose").split()
BEHAVIOUR_RUNNER = (
    "compose" if "compose" in RUNNERS and docker_engine_answers() else "native" if "native" in RUNNERS else RUNNERS[0]
)
# Behaviour modules run on the native lab when both runners run, to balance CI's two workers
# (each runs one runner's tests): with every behaviour test on Compose, its worker took 26.5 min
# against the native one's 8 (docs/testing.md, "Balance"; a module listed here runs on Compose where no native lab runs).
BALANCED_TO_NATIVE = frozenset({"test_faults", "test_lifecycle", "test_batch_scoring", "test_model_api"})

FAILED_STARTS = pytest.StashKey[dict[str, str]]()


class Lab(stacks.Lab):
    """The kit's Lab, with what only the lab's own tests reach: its internals."""

    def require_internals(self) -> Runner:
        if self.stack is None:
            pytest.skip("needs the stack's internals (started by the fixture, not LAB_TEST_URL)")
        return self.stack

    def require(self, runner: str) -> Runner:
        if self.runner != runner:
            pytest.skip(f"{runner} runner only")
        return self.require_internals()

    def address(self, service: str, setting: str) -> tuple[str, int]:
        """Host and port where the test reaches a service's port (given by its setting)."""
        return self.require_internals().address(service, setting)

    def s3_settings(self) -> Settings:
        host, port = self.address("s3", "S3_PORT")
        return Settings({**self.settings.as_env(), "S3_ENDPOINT_URL": f"http://{host}:{port}"})

    def s3(self):
        return s3_client(self.s3_settings())

    def postgres(self, database: str = "POSTGRES_DB"):
        """A connection to one of the lab's databases (the setting naming it)."""
        host, port = self.address("postgres", "POSTGRES_PORT")
        s = self.settings
        return psycopg2.connect(
            host=host, port=port, user=s["POSTGRES_USER"], password=s["POSTGRES_PASSWORD"], dbname=s[database]
        )

    def restart(self, *services: str) -> None:
        self.require_internals().restart(*services)

    def log_tail(self, service: str, lines: int = 30) -> str:
        return self.require_internals().log_tail(service, lines)


def _native(request):
    # Logs of a failed session stay on disk; pytest_terminal_summary prints their tails.
    return stacks.native_lab(keep_state=lambda: request.session.testsfailed > 0, overrides=TEST_OVERRIDES)


def _compose(request):
    if not docker_engine_answers():
        pytest.skip("no Docker engine answers: the Compose runner is not tested here")
    from tests.compose.harness import compose_test_lab

    return compose_test_lab()


STARTERS = {"native": _native, "compose": _compose}


@pytest.fixture(scope="session", params=RUNNERS)
def lab(request):
    if EXTERNAL:
        yield Lab(**vars(EXTERNAL))
        return
    runner, failed = request.param, request.config.stash.setdefault(FAILED_STARTS, {})
    if runner in failed:
        pytest.skip(f"the {runner} stack did not start (see the first error of this runner)")
    with contextlib.ExitStack() as cleanup:
        try:
            lab = Lab(**vars(cleanup.enter_context(STARTERS[runner](request))))
        except (LabError, RuntimeError) as exc:
            failed[runner] = str(exc)
            pytest.fail(f"the {runner} stack did not start: {exc}", pytrace=False)
        yield lab


@contextlib.contextmanager
def client_for(url: str, user: str, password: str):
    """An MLflow client (and the fluent API) configured the way `eval "$(make -s env)"` configures them."""
    with client_environment(stacks.Lab(url, user, password)) as client:
        yield client


@pytest.fixture(scope="session")
def mlflow_client(lab):
    with client_environment(lab) as client:
        yield client


@pytest.fixture(scope="session")
def mlflow2_lab(tmp_path_factory):
    """A native lab written by MLflow 2.x, then brought up by this MLflow, and a backup archive
    taken before the upgrade (tests/upgrade/harness.py); one per session, as it is slow to make."""
    if EXTERNAL:
        pytest.skip("the MLflow 2.x lab is made with the native runner")
    from tests.upgrade.harness import mlflow2_lab

    with mlflow2_lab(tmp_path_factory.mktemp("mlflow2")) as made:
        yield made


@pytest.fixture
def data_dir(lab, tmp_path) -> Path:
    """Where a job of this runner reads and writes relative `data/...` paths: the checkout's
    ./data for Compose (mounted into job containers), a temporary folder natively."""
    return REPO_ROOT if lab.runner == "compose" else tmp_path


def _runner_of(item) -> str | None:
    return item.callspec.params.get("lab") if hasattr(item, "callspec") else None


def behaviour_runner(item) -> str:
    """Where a behaviour test runs: the behaviour runner, or natively for a balanced module."""
    if "native" in RUNNERS and item.module.__name__.rpartition(".")[2] in BALANCED_TO_NATIVE:
        return "native"
    return BEHAVIOUR_RUNNER


def _runs_on(item, runner: str) -> bool:
    """Behaviour tests run on the behaviour runner only; contract tests on their runners."""
    contract = item.get_closest_marker("contract")
    if contract is None:
        return runner == behaviour_runner(item)
    return not contract.args or runner in contract.args


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config, items):
    """After pytest has grouped the tests by runner (the session fixture's parameter): drop
    the tests that do not run on a runner, then move the ones that replace the lab to the end
    of their runner's group."""
    yield
    kept, dropped = [], []
    for item in items:
        runner = _runner_of(item)
        (kept if runner in (None, "external") or _runs_on(item, runner) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    group_of: dict[object, int] = {}
    for item in kept:
        group_of.setdefault(_runner_of(item), len(group_of))
    kept.sort(key=lambda item: (group_of[_runner_of(item)], item.get_closest_marker("replaces_lab") is not None))
    items[:] = kept


def pytest_itemcollected(item):
    """`make test` runs `-n 2 --dist loadgroup`: each runner's tests in order on one worker,
    beside the other runner's; tests that bring up native labs of their own (upgrade, kit,
    declaration) go with the native runner's, so that two stacks at most run at once. (Marked
    here, before xdist reads the groups in its own pytest_collection_modifyitems.)"""
    group = _runner_of(item) or ("native" if item.get_closest_marker("stack") else None)
    if group and item.config.pluginmanager.hasplugin("xdist"):
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_report_header(config):
    return f"mlflow-lab: behaviour tests on {BEHAVIOUR_RUNNER}, contract tests on {' and '.join(RUNNERS)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed stack test's report carries the tail of every service's log (compose.yaml's
    services), read while the stack is still up."""
    report = yield
    lab = item.funcargs.get("lab") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(lab, Lab) and lab.stack is not None:
        tails = []
        for name in declaration.services(lab.settings.as_env(), lab.stack.profiles()):
            with contextlib.suppress(Exception):
                tails.append(f"==> {name} <==\n{lab.log_tail(name, 25)}")
        report.sections.append((f"lab service logs (tail), {lab.runner} runner", "\n".join(tails)))
    return report
