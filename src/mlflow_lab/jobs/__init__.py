"""Model lifecycle jobs (train, promote, score, sample-input): one CLI, `lab-job`, that works against any MLflow server."""

from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
from collections.abc import Iterator

from mlflow_lab.settings import Settings

# The tag a running job renews on its open runs (jobs.runs); read by the init step, which
# must not import MLflow for it.
ALIVE_UNTIL_TAG = "mlflow_lab.alive_until"


def run_here(settings: Settings, name: str, args: list[str]) -> int:
    """Run `lab-job <name> <args>` from this environment against the lab; its exit code."""
    environment = {**os.environ, **settings.client_env()}
    return subprocess.run([sys.executable, "-m", "mlflow_lab.jobs", name, *args], env=environment).returncode


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Start-up work (imports, loading a model) without the cyclic garbage collector.

    It allocates hundreds of thousands of objects that live as long as the job, and the
    collector would walk them again and again: ~0.3 s of a 2.6 s import-and-load, measured.
    What it made is then frozen (left out of later collections) and collection resumes.
    """
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
