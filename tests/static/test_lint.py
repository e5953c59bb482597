"""Lint, format and type checks (configuration in pyproject.toml): fix what they find, do not silence it."""

import subprocess
import sys
from pathlib import Path

import pytest

from mlflow_lab.settings import REPO_ROOT

BIN = Path(sys.executable).parent
CHECKS = {
    "ruff lint": [str(BIN / "ruff"), "check", "src", "tests", "bench"],
    "ruff format": [str(BIN / "ruff"), "format", "--check", "src", "tests", "bench"],
    "mypy": [str(BIN / "mypy")],  # files = ["src"]
}


@pytest.mark.parametrize("check", list(CHECKS))
def test_code_passes(check):
    result = subprocess.run(CHECKS[check], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
