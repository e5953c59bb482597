"""`lab-job`: every lifecycle job as one plain CLI, usable against any MLflow server.

The tracking server comes from MLFLOW_TRACKING_URI (plus MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD for the lab's basic auth): `eval "$(make -s env)"` sets them.
Expected failures are LabErrors: one sentence on stderr and exit 1.
"""

from __future__ import annotations

import os
import sys

import typer

from mlflow_lab.errors import run_cli
from mlflow_lab.jobs import batch_score, promote, sample_input, train_psystock, train_wine

app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True, pretty_exceptions_enable=False)
train = typer.Typer(help="Train a lab model and register a version.", no_args_is_help=True)
train.command("wine-quality")(train_wine.main)
train.command("psystock")(train_psystock.main)
app.add_typer(train, name="train")
app.command("promote")(promote.main)
app.command("score")(batch_score.main)
app.command("sample-input")(sample_input.main)


def main() -> None:
    if not sys.stderr.isatty():  # keep logs and error output free of progress-bar noise
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    run_cli(app)


if __name__ == "__main__":
    main()
