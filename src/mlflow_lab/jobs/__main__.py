"""`lab-job`: every lifecycle job as one plain CLI, usable against any MLflow server.

The tracking server comes from MLFLOW_TRACKING_URI (plus MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD for the lab's basic auth): `eval "$(make -s env)"` sets them.
Expected failures are LabErrors: one sentence on stderr and exit 1.
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from mlflow_lab.errors import run_cli
from mlflow_lab.jobs import collector_paused
from mlflow_lab.trainers import TRAINERS

# Each command's module is imported only when that command runs (all of them for --help):
# `score` never pays for the training libraries (xgboost, matplotlib, scipy's search spaces).
COMMANDS = {
    "promote": "mlflow_lab.jobs.promote",
    "score": "mlflow_lab.jobs.batch_score",
    "sample-input": "mlflow_lab.jobs.sample_input",
}
# Command groups: the module's `app` (a Typer) becomes `lab-job <name> ...`.
GROUPS = {"genai": "mlflow_lab.genai.cli"}
SUMMARY = __doc__.split("\n\n")[0]


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """The CLI with the commands `argv` names (every command when it names none of them)."""
    argv = argv or []
    wanted = argv[0] if argv and argv[0] in (*COMMANDS, *GROUPS, "train") else None  # None: all (help, typos)
    app = typer.Typer(help=SUMMARY, no_args_is_help=True, pretty_exceptions_enable=False)
    app.callback()(lambda: None)  # a group even with one command registered: `lab-job score ...`
    if wanted in (None, "train"):
        train = typer.Typer(help="Train a lab model and register a version.", no_args_is_help=True)
        trainer = argv[1] if wanted and len(argv) > 1 and argv[1] in TRAINERS else None
        for name, module in TRAINERS.items():
            if trainer in (None, name):
                train.command(name)(importlib.import_module(module).main)
        app.add_typer(train, name="train")
    for name, module in COMMANDS.items():
        if wanted in (None, name):
            app.command(name)(importlib.import_module(module).main)
    for name, module in GROUPS.items():
        if wanted in (None, name):
            app.add_typer(importlib.import_module(module).app, name=name)
    return app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # the whole CLI, for tools that inspect it
        return build_app()
    raise AttributeError(name)


def main() -> None:
    if not sys.stderr.isatty():  # keep logs and error output free of progress-bar noise
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with collector_paused():
        app = build_app(sys.argv[1:])
    run_cli(app)


if __name__ == "__main__":
    main()
