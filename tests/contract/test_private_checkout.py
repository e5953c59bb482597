"""A checkout in a private directory (a 0700 home, `mktemp -d`) runs natively: as root the
runner's unprivileged PostgreSQL and nginx cannot reach into it, so their files live elsewhere.
(The Compose runner's contract for it is CI itself, which runs from a clone in `mktemp -d`.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests

from mlflow_lab.settings import REPO_ROOT, write_env_file
from mlflow_lab.testing.ports import fresh_settings

pytestmark = pytest.mark.stack


def test_native_stack_from_a_clone_in_a_0700_directory():
    private = Path(tempfile.mkdtemp(prefix="private-"))  # mode 0700, as mktemp -d makes it
    try:
        clone = private / "lab"
        subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True)
        settings = fresh_settings()
        env_file = clone / ".env"
        write_env_file(env_file, settings.as_env())
        # The clone's own code (its src/), this venv's packages.
        env = {**os.environ, "PYTHONPATH": str(clone / "src"), "LAB_RUNNER": "native", "LAB_ENV_FILE": str(env_file)}
        lab = [sys.executable, "-m", "mlflow_lab.cli"]
        up = subprocess.run([*lab, "up"], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
        try:
            assert up.returncode == 0, up.stdout + up.stderr
            assert f"state in {clone / '.lab'}" in up.stdout
            url, auth = settings.tracking_uri("127.0.0.1"), (settings["LAB_USER"], settings["LAB_PASSWORD"])
            response = requests.get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", auth=auth, timeout=10)
            assert response.status_code == 200, response.text
        finally:
            subprocess.run([*lab, "clean", "--force"], cwd=clone, env=env, capture_output=True, timeout=300)
    finally:
        shutil.rmtree(private, ignore_errors=True)
