"""`lab`'s own options (--runner, --state-dir, or LAB_RUNNER and LAB_STATE_DIR) are declared once and
reach every command that talks to the lab, given before the command's name or after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlflow_lab import cli


class FakeRunner:
    name = "native"

    def __init__(self):
        self.jobs: list[tuple[str, list[str]]] = []

    def show_status(self) -> bool:
        return True

    def run_job(self, name: str, args: list[str]) -> int:
        self.jobs.append((name, args))
        return 0


@pytest.fixture
def opened(monkeypatch):
    """What each command asked open_runner for: (runner, state directory); the runner it got."""
    for name in ("LAB_RUNNER", "LAB_STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    asked: list[tuple[str, Path]] = []
    runner = FakeRunner()

    def open_runner(requested, state, settings):
        asked.append((requested, state))
        return runner, "asked by the test"

    monkeypatch.setattr(cli, "open_runner", open_runner)
    return asked, runner


def lab(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli.app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize(
    "args, env",
    [
        (["--runner", "native", "--state-dir", "/tmp/x", "status"], None),
        (["status", "--runner", "native", "--state-dir", "/tmp/x"], None),  # after the command, as scripts have it
        (["status", "--runner=native", "--state-dir=/tmp/x"], None),
        (["status"], {"LAB_RUNNER": "native", "LAB_STATE_DIR": "/tmp/x"}),
        (["--runner", "native", "status"], {"LAB_RUNNER": "compose", "LAB_STATE_DIR": "/tmp/x"}),  # the option wins
    ],
)
def test_the_runner_and_state_dir_reach_the_command(opened, args, env):
    asked, _ = opened
    lab(*args, env=env)
    assert asked == [("native", Path("/tmp/x"))]


def test_without_options_the_runner_is_chosen_automatically_for_the_checkouts_lab(opened):
    asked, _ = opened
    lab("status")
    assert asked == [("auto", cli.DEFAULT_STATE)]


def test_a_jobs_own_arguments_pass_through_and_a_double_dash_keeps_lab_options_for_the_job(opened):
    asked, runner = opened
    lab("job", "train", "--model", "wine", "--runner", "native", "--", "--runner", "kept")
    assert asked == [("native", cli.DEFAULT_STATE)]
    assert runner.jobs == [("train", ["--model", "wine", "--runner", "kept"])]


def test_a_bad_runner_is_one_sentence_and_a_clean_exit():
    for args in (["--runner", "bogus", "status"], ["status", "--runner", "bogus"]):
        result = subprocess.run(
            [sys.executable, "-m", "mlflow_lab.cli", *args],
            env={**os.environ, "LAB_ENV_FILE": os.devnull},
            capture_output=True,
            text=True,
        )
        assert (result.returncode, result.stderr) == (1, "error: LAB_RUNNER must be auto, compose or native; got 'bogus'.\n")
