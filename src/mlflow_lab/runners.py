"""The two ways to run the lab behind one interface, chosen once per command.

`ComposeStack` (containers on a Docker engine) and `NativeStack` (host processes under
supervisord) both implement `Runner`; the CLI asks `open_runner` for one and never
branches on which it got. `auto` is Compose where Compose can work on this machine (an
engine, Compose v2.20+, the base images at hand), else native, and says why.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from mlflow_lab.compose import (
    INSTALL_COMPOSE,
    MIN_COMPOSE_TEXT,
    ComposeStack,
    compose_command,
    unavailable_base_image,
)
from mlflow_lab.errors import LabError
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import Settings

RUNNERS = ("compose", "native")


class Runner(Protocol):
    name: str

    def describe(self, reason: str) -> str:
        """What `up` says about where the lab runs."""

    def up(self) -> None:
        """Start every service and wait until healthy; nothing is left half-started on failure."""

    def down(self) -> None:
        """Stop every service; data is kept."""

    def profiles(self) -> set[str]:
        """The compose.yaml profiles this runner runs (which S3 server)."""

    def clean(self) -> None:
        """Stop every service and delete all data."""

    def show_status(self) -> bool:
        """Print each service and its health; True if all are healthy."""

    def show_logs(self, service: str, lines: int) -> None:
        """Print the tail of one service's log, or of all."""

    def run_job(self, name: str, args: list[str]) -> int:
        """Run `lab-job <name> <args>` against the lab; its exit code."""

    def postgres_command(self, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        """Command line and environment that run a PostgreSQL client program (psql, pg_dump,
        pg_restore) beside the lab's server, connected to the tracking database as the lab's user."""

    def run_init(self) -> None:
        """Run the one-shot init step again (schema upgraded to this MLflow's head, bucket)."""

    # --- one service, for tests and tools (no caller branches on the runner) ---------------
    def restart(self, *services: str) -> None:
        """Restart these services and wait until every service is healthy again."""

    def stop_service(self, service: str) -> None:
        """Stop one service (the others keep running)."""

    def start_service(self, service: str) -> None:
        """Start a stopped service again and wait until every service is healthy."""

    def main_pid(self, service: str) -> int:
        """The PID, on this machine, of the service's main process; 0 when it is not running."""

    def exec(self, service: str, argv: list[str]) -> subprocess.CompletedProcess:
        """Run a command beside a running service: in its container, or natively as its user
        with its environment; output captured, never raises on a non-zero exit."""

    def data_dir(self, service: str) -> Path:
        """Where the service keeps its data, as a path on this machine (a volume's mount point)."""

    def address(self, service: str, setting: str) -> tuple[str, int]:
        """Host and port where this machine reaches the service's port named by `setting`
        (under Compose only ports a compose file publishes, e.g. the tests' internals.yaml)."""

    def log_tail(self, service: str, lines: int = 30) -> str:
        """The last lines of one service's log."""


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def auto_choice(settings: Settings, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Compose where it can work on this machine (a Docker engine, Compose v2.20+, the base
    images present or pullable), else native; the reason says why, and what containers would need."""
    if not docker_engine_answers():
        return "native", "no Docker engine answered; for containers install Docker Engine and its compose plugin"
    command, found = compose_command(environ)
    if command is None:
        return "native", (
            f"the Docker engine has no Compose v{MIN_COMPOSE_TEXT} or newer, found {found}; "
            f"for containers install {INSTALL_COMPOSE}"
        )
    if missing := unavailable_base_image(settings, environ):
        return "native", (
            f"the Docker engine lacks the base image {settings[missing]} and no registry serves it; "
            f"for containers `docker load` it or set {missing} in .env to your registry mirror's"
        )
    return "compose", f"a Docker engine answered, with {found} and the base images"


def choose(requested: str, state: Path, settings: Settings) -> tuple[str, str]:
    """The runner's name, and why it was chosen."""
    marker = state / "runner"
    if requested == "auto" and marker.exists():
        return marker.read_text().strip(), "it brought the lab up"  # keep talking to that runner
    if requested == "auto":
        return auto_choice(settings)
    if requested not in RUNNERS:
        raise LabError(f"LAB_RUNNER must be auto, {' or '.join(RUNNERS)}; got {requested!r}.")
    return requested, f"LAB_RUNNER={requested}"


def open_runner(requested: str, state: Path, settings: Settings) -> tuple[Runner, str]:
    """The runner for this command, and why it was chosen."""
    name, reason = choose(requested, state, settings)
    runner: Runner = ComposeStack(settings) if name == "compose" else NativeStack(settings, state)
    return runner, reason


def remember(runner: Runner, state: Path) -> None:
    """Later commands (`down`, `status`, ...) talk to the runner that brought the lab up."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "runner").write_text(runner.name)
