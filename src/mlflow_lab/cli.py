"""`lab`: bring the stack up and down, show its state, and print client settings.

Uses Compose when a Docker engine answers and the native runner otherwise. Every
expected failure is a LabError, printed as one sentence with a non-zero exit.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from mlflow_lab.compose import ComposeStack
from mlflow_lab.errors import LabError, run_cli
from mlflow_lab.native.runner import NativeStack
from mlflow_lab.settings import ENV_FILE, REPO_ROOT, Settings, ensure_env_file

app = typer.Typer(help="The mlflow-lab stack: MLflow on PostgreSQL and S3 behind nginx.", no_args_is_help=True,
                  pretty_exceptions_enable=False)

StateDir = Annotated[Path, typer.Option(envvar="LAB_STATE_DIR", help="Where the native runner keeps all its state.")]
DEFAULT_STATE = REPO_ROOT / ".lab"
RunnerOpt = Annotated[str, typer.Option(envvar="LAB_RUNNER", help="auto (Compose if a Docker engine answers), compose or native.")]


def docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


def choose_runner(requested: str, state: Path) -> str:
    marker = state / "runner"
    if requested == "auto" and marker.exists():
        return marker.read_text().strip()  # keep talking to the runner that brought it up
    if requested == "auto":
        return "compose" if docker_engine_answers() else "native"
    if requested not in ("compose", "native"):
        raise LabError(f"LAB_RUNNER must be auto, compose or native; got {requested!r}.")
    return requested


def load_settings() -> Settings:
    settings = Settings.load()
    settings.validate()
    return settings


@app.command()
def up(state_dir: StateDir = DEFAULT_STATE, runner: RunnerOpt = "auto") -> None:
    """Create .env on first run (strong random secrets), then start every service and wait until healthy."""
    written = ensure_env_file()
    if written:
        typer.echo(f"wrote {len(written)} setting(s) to {ENV_FILE} (secrets generated; the file is yours to edit)")
    settings = load_settings()
    chosen = choose_runner(runner, state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    if chosen == "compose":
        typer.echo("runner: Compose (a Docker engine answered)")
        ComposeStack(settings).up()
    else:
        stack = NativeStack(settings, state_dir)
        why = "LAB_RUNNER=native" if runner == "native" else "no Docker engine answered"
        typer.echo(f"runner: native ({why}); state in {state_dir}")
        typer.echo(f"artifacts: {stack.describe_s3()}")
        stack.up()
    (state_dir / "runner").write_text(chosen)
    typer.echo(f"\nMLflow is up at {settings.tracking_uri()}  (user {settings['LAB_USER']}, "
               f"password in {ENV_FILE.name}: LAB_PASSWORD)")
    typer.echo(f"Model API: {settings.tracking_uri()}/models/<name>/invocations and /v2/models/<name>/infer "
               "(same credentials; serves a model once it has a Production version)")
    typer.echo('Point a client at it:  eval "$(make -s env)"')


@app.command()
def down(state_dir: StateDir = DEFAULT_STATE, runner: RunnerOpt = "auto") -> None:
    """Stop every service; data is kept."""
    if choose_runner(runner, state_dir) == "compose":
        ComposeStack(Settings.load()).down()
    else:
        NativeStack(Settings.load(), state_dir).down()
    typer.echo("stopped (data kept; `make clean` deletes it)")


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE, runner: RunnerOpt = "auto") -> None:
    """Each service and its health."""
    if choose_runner(runner, state_dir) == "compose":
        if not ComposeStack(Settings.load()).status():
            raise typer.Exit(1)
        return
    states = NativeStack(Settings.load(), state_dir).status()
    for name, state in states.items():
        typer.echo(f"{name:10} {state}")
    if any(state != "healthy" for state in states.values()):
        raise typer.Exit(1)


@app.command()
def logs(
    service: Annotated[str, typer.Argument(help="One service (postgres, s3, mlflow, nginx, init); all when omitted.")] = "",
    lines: Annotated[int, typer.Option(help="Lines from the end of each log.")] = 50,
    state_dir: StateDir = DEFAULT_STATE,
    runner: RunnerOpt = "auto",
) -> None:
    """The tail of each service's log."""
    if choose_runner(runner, state_dir) == "compose":
        ComposeStack(Settings.load()).logs(service, lines)
        return
    stack = NativeStack(Settings.load(), state_dir)
    names = [service] if service else [svc.name for svc in stack.services()] + ["init"]
    for name in names:
        typer.echo(f"==> {name} <==\n{stack.log_tail(name, lines)}\n")


def client_env(settings: Settings) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": settings.tracking_uri(), "MLFLOW_TRACKING_USERNAME": settings["LAB_USER"],
            "MLFLOW_TRACKING_PASSWORD": settings["LAB_PASSWORD"]}


@app.command()
def env() -> None:
    """Shell exports that point an MLflow client at the lab: eval "$(make -s env)"."""
    for key, value in client_env(Settings.load()).items():
        typer.echo(f"export {key}={shlex.quote(value)}")


# Jobs that have a Compose service (profile `jobs`); the others only write local files.
COMPOSE_JOBS = ("train", "promote", "score")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def job(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="train, promote, score or sample-input; the rest goes to `lab-job <name>`.")],
    state_dir: StateDir = DEFAULT_STATE,
    runner: RunnerOpt = "auto",
) -> None:
    """Run a lifecycle job against the lab: in its container under Compose, else from this venv."""
    if choose_runner(runner, state_dir) == "compose" and name in COMPOSE_JOBS:
        if code := ComposeStack(Settings.load()).run_job(name, ctx.args):
            raise typer.Exit(code)
        return
    environment = {**os.environ, **client_env(Settings.load())}
    result = subprocess.run([sys.executable, "-m", "mlflow_lab.jobs", name, *ctx.args], env=environment)
    if result.returncode:
        raise typer.Exit(result.returncode)


@app.command()
def clean(
    force: Annotated[bool, typer.Option("--force", envvar="FORCE", help="Do not ask before deleting.")] = False,
    state_dir: StateDir = DEFAULT_STATE,
    runner: RunnerOpt = "auto",
) -> None:
    """Stop the stack and delete all its data (runs, models, artifacts). .env is kept."""
    if not force and not typer.confirm("Delete every run, model and artifact of the lab?"):
        raise typer.Exit(1)
    if choose_runner(runner, state_dir) == "compose":
        ComposeStack(Settings.load()).down(volumes=True)
        shutil.rmtree(state_dir, ignore_errors=True)
    else:
        stack = NativeStack(Settings.load(), state_dir)
        stack.down()
        stack.remove_state()
    typer.echo("deleted the lab's data")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
