"""Where a training job's runs go: its experiment, or inside the run that `mlflow run` made.

`mlflow run` creates a run and passes MLFLOW_RUN_ID (and the experiment) to the entry
point. A job that called `set_experiment` and started runs of its own would then fail, so
under `mlflow run` the job's runs become children of the project's run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import mlflow

StartRun = Callable[[str], contextlib.AbstractContextManager]


@contextlib.contextmanager
def job_runs(experiment: str) -> Iterator[StartRun]:
    """Yields `start(run_name)`, which opens one of the job's runs."""
    if os.environ.get("MLFLOW_RUN_ID"):
        with mlflow.start_run():  # resumes the run `mlflow run` created
            yield lambda name: mlflow.start_run(run_name=name, nested=True)
        return
    mlflow.set_experiment(experiment)
    yield lambda name: mlflow.start_run(run_name=name)
