"""`lab`: bring the stack up and down, show its state, and print client settings.

Uses Compose when a Docker engine answers and the native runner otherwise. Every
expected failure is a LabError, printed as one sentence with a non-zero exit.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path
from typing import Annotated

import typer

from mlflow_lab.errors import run_cli
from mlflow_lab.runners import Runner, open_runner, remember
from mlflow_lab.settings import ENV_FILE, REPO_ROOT, Settings, ensure_env_file

app = typer.Typer(
    help="The mlflow-lab stack: MLflow on PostgreSQL and S3 behind nginx.", no_args_is_help=True, pretty_exceptions_enable=False
)

StateDir = Annotated[Path, typer.Option(envvar="LAB_STATE_DIR", help="Where the native runner keeps all its state.")]
DEFAULT_STATE = REPO_ROOT / ".lab"
RunnerOpt = Annotated[
    str, typer.Option(envvar="LAB_RUNNER", help="auto (Compose if a Docker engine answers), compose or native.")
]


def runner_for(requested: str, state_dir: Path, settings: Settings | None = None) -> Runner:
    return open_runner(requested, state_dir, settings or Settings.load())[0]


@app.command()
def up(state_dir: StateDir = DEFAULT_STATE, runner: RunnerOpt = "auto") -> None:
    """Create .env on first run (strong random secrets), then start every service and wait until healthy."""
    written = ensure_env_file()
    if written:
        typer.echo(f"wrote {len(written)} setting(s) to {ENV_FILE} (secrets generated; the file is yours to edit)")
    settings = Settings.load()
    settings.validate()
    chosen, reason = open_runner(runner, state_dir, settings)
    typer.echo(chosen.describe(reason))
    chosen.up()
    remember(chosen, state_dir)
    typer.echo(
        f"\nMLflow is up at {settings.tracking_uri()}  (user {settings['LAB_USER']}, password in {ENV_FILE.name}: LAB_PASSWORD)"
    )
    typer.echo(
        f"Model API: {settings.tracking_uri()}/models/<name>/invocations and /v2/models/<name>/infer "
        "(same credentials; serves a model once it has a Production version)"
    )
    typer.echo('Point a client at it:  eval "$(make -s env)"')


@app.command()
def down(state_dir: StateDir = DEFAULT_STATE, runner: RunnerOpt = "auto") -> None:
    """Stop every service; data is kept."""
    runner_for(runner, state_dir).down()
    typer.echo("stopped (data kept; `make clean` deletes it)")


@app.command()
def status(state_dir: StateDir = DEFAULT_STATE, runner: RunnerOpt = "auto") -> None:
    """Each service and its health."""
    if not runner_for(runner, state_dir).show_status():
        raise typer.Exit(1)


@app.command()
def logs(
    service: Annotated[str, typer.Argument(help="One service (postgres, s3, mlflow, nginx, init); all when omitted.")] = "",
    lines: Annotated[int, typer.Option(help="Lines from the end of each log.")] = 50,
    state_dir: StateDir = DEFAULT_STATE,
    runner: RunnerOpt = "auto",
) -> None:
    """The tail of each service's log."""
    runner_for(runner, state_dir).show_logs(service, lines)


@app.command()
def env() -> None:
    """Shell exports that point an MLflow client at the lab: eval "$(make -s env)"."""
    for key, value in Settings.load().client_env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def job(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="train, promote, score or sample-input; the rest goes to `lab-job <name>`.")],
    state_dir: StateDir = DEFAULT_STATE,
    runner: RunnerOpt = "auto",
) -> None:
    """Run a lifecycle job against the lab: in its container under Compose, else from this venv."""
    if code := runner_for(runner, state_dir).run_job(name, ctx.args):
        raise typer.Exit(code)


@app.command()
def clean(
    force: Annotated[bool, typer.Option("--force", envvar="FORCE", help="Do not ask before deleting.")] = False,
    state_dir: StateDir = DEFAULT_STATE,
    runner: RunnerOpt = "auto",
) -> None:
    """Stop the stack and delete all its data (runs, models, artifacts). .env is kept."""
    if not force and not typer.confirm("Delete every run, model and artifact of the lab?"):
        raise typer.Exit(1)
    runner_for(runner, state_dir).clean()
    shutil.rmtree(state_dir, ignore_errors=True)
    typer.echo("deleted the lab's data")


def main() -> None:
    run_cli(app)


if __name__ == "__main__":
    main()
