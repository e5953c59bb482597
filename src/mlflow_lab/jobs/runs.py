"""Where a training job's runs go, and how a killed job's runs get marked FAILED.

`mlflow run` creates a run and passes MLFLOW_RUN_ID (and the experiment) to the entry
point. A job that called `set_experiment` and started runs of its own would then fail, so
under `mlflow run` the job's runs become children of the project's run.

A job killed with SIGKILL cannot end its runs: they would stay RUNNING for ever. So while
a run is open the job renews its tag ALIVE_UNTIL_TAG (epoch seconds); the init step of the
next `make up` marks FAILED every RUNNING run whose promise has expired
(`mlflow_lab.stack.init_stack.fail_abandoned_runs`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator

import mlflow

from mlflow_lab.jobs import ALIVE_UNTIL_TAG

StartRun = Callable[[str], contextlib.AbstractContextManager]
# How often the tag is renewed; a run is given up after three missed renewals.
HEARTBEAT_SECONDS = float(os.environ.get("LAB_JOB_HEARTBEAT_SECONDS", "20"))


class Heartbeat:
    """Renews ALIVE_UNTIL_TAG on the job's open runs from a background thread."""

    def __init__(self, seconds: float = HEARTBEAT_SECONDS):
        self.seconds, self.open, self.stop = seconds, set[str](), threading.Event()
        self.client = mlflow.MlflowClient()

    def beat(self, run_id: str) -> None:
        self.client.set_tag(run_id, ALIVE_UNTIL_TAG, str(int(time.time() + 3 * self.seconds)))

    def _loop(self) -> None:
        while not self.stop.wait(self.seconds):
            for run_id in list(self.open):
                with contextlib.suppress(Exception):  # a missed beat is not the job's failure
                    self.beat(run_id)

    @contextlib.contextmanager
    def running(self) -> Iterator[Callable[[contextlib.AbstractContextManager], contextlib.AbstractContextManager]]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()

        @contextlib.contextmanager
        def watched(opening: contextlib.AbstractContextManager):
            with opening as run:
                self.beat(run.info.run_id)
                self.open.add(run.info.run_id)
                try:
                    yield run
                finally:
                    self.open.discard(run.info.run_id)

        try:
            yield watched
        finally:
            self.stop.set()
            thread.join()


@contextlib.contextmanager
def job_runs(experiment: str) -> Iterator[StartRun]:
    """Yields `start(run_name)`, which opens one of the job's runs."""
    with Heartbeat().running() as watched:
        if os.environ.get("MLFLOW_RUN_ID"):
            with watched(mlflow.start_run()):  # resumes the run `mlflow run` created
                yield lambda name: watched(mlflow.start_run(run_name=name, nested=True))
            return
        mlflow.set_experiment(experiment)
        yield lambda name: watched(mlflow.start_run(run_name=name))
