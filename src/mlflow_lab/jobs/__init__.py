"""Model lifecycle jobs (train, promote, score, sample-input): one CLI, `lab-job`, that works against any MLflow server."""

from __future__ import annotations

import os
import subprocess
import sys

from mlflow_lab.settings import Settings

# The tag a running job renews on its open runs (jobs.runs); read by the init step, which
# must not import MLflow for it.
ALIVE_UNTIL_TAG = "mlflow_lab.alive_until"


def run_here(settings: Settings, name: str, args: list[str]) -> int:
    """Run `lab-job <name> <args>` from this environment against the lab; its exit code."""
    environment = {**os.environ, **settings.client_env()}
    return subprocess.run([sys.executable, "-m", "mlflow_lab.jobs", name, *args], env=environment).returncode
