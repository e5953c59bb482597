"""The test kit as a user gets it: the lab's built wheel in an environment of its own, and a
project (example_project/) whose suite asks the plugin for a lab, which the plugin starts and
removes. Only the third-party dependencies are shared with the lab's .venv (a path line in
the example environment, and links to their programs), since installing ~1.9 GB of wheels
again costs CI over a minute; the lab's own code and commands come from the wheel alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from mlflow_lab.settings import REPO_ROOT

EXAMPLE = Path(__file__).with_name("example_project")
pytestmark = pytest.mark.stack


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def example_env(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kit")
    source = folder / "source"  # a copy: setuptools writes build/ and *.egg-info beside the sources
    source.mkdir()
    for part in ("pyproject.toml", "requirements", "src"):
        copy = shutil.copytree if (REPO_ROOT / part).is_dir() else shutil.copy
        copy(REPO_ROOT / part, source / part)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(folder), str(source)])
    (wheel,) = folder.glob("mlflow_lab-*.whl")
    env = folder / "env"
    run([sys._base_executable, "-m", "venv", "--without-pip", str(env)])
    python = env / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)])
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    (Path(site) / "lab-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    # ... and their programs (supervisord, weed, mlflow); the wheel installed `lab` and `lab-job`.
    for program in Path(sys.executable).parent.iterdir():
        if not (env / "bin" / program.name).exists() and not program.name.startswith(("python", "activate", "pip")):
            (env / "bin" / program.name).symlink_to(program)
    return env


def test_the_wheel_carries_the_plugin_and_not_the_checkout(example_env):
    python = example_env / "bin" / "python"
    found = run([str(python), "-c", "import mlflow_lab.testing.plugin as p; print(p.__file__)"]).stdout.strip()
    assert found.startswith(str(example_env)), f"mlflow_lab came from {found}, not the wheel"


def test_an_example_project_runs_green_against_a_lab_the_plugin_starts(example_env, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LAB_", "MLFLOW_", "PYTEST_"))}
    # Where the plugin's throwaway lab keeps its state: short, as supervisord's socket path must be.
    scratch = Path(tempfile.mkdtemp(prefix="kit-"))
    env.update(LAB_HOME=str(REPO_ROOT), LAB_RUNNER="native", PYTHONPATH=str(project), TMPDIR=str(scratch))
    result = subprocess.run(
        [str(example_env / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout
    left = list(scratch.glob("mlflow-lab-*"))
    shutil.rmtree(scratch, ignore_errors=True)
    assert left == [], "the plugin removed its lab, data and all"
