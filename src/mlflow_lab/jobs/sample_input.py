"""Scoring input for the lab's models, built with the same feature code as their training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pyarrow as pa
import typer

from mlflow_lab.errors import LabError
from mlflow_lab.features.psystock import scoring_input
from mlflow_lab.jobs import train_wine
from mlflow_lab.scoring.tables import TableWriter, table_format

MODELS = ("wine-quality", "psystock")


def build(model: str, rows: int, seed: int):
    if model == "wine-quality":
        features = train_wine.load_data(seed)[1]  # the held-out rows, repeated to the size asked
        return features.sample(rows, replace=rows > len(features), random_state=seed).reset_index(drop=True)
    if model == "psystock":
        return scoring_input(days=rows + 14, seed=seed).drop(columns="date").tail(rows).reset_index(drop=True)
    raise LabError(f"no sample input for model {model!r}; choose one of {', '.join(MODELS)}.")


def write(model: str, output: Path, rows: int = 1000, seed: int = 11) -> Path:
    frame = build(model, rows, seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    if table_format(output) == "csv":
        # pandas writes a whole-valued double as "100.0", Arrow as "100": readers that infer
        # types from the text (`mlflow models predict`, pandas) would then see an integer
        # column where the model's signature takes doubles, and MLflow refuses int -> float.
        frame.to_csv(output, index=False)
        return output
    writer = TableWriter(output, "parquet")
    writer.write(pa.Table.from_pandas(frame, preserve_index=False))
    writer.close()
    return output


def main(
    model: Annotated[str, typer.Argument(help="wine-quality or psystock.")],
    output: Annotated[Path, typer.Argument(help="File to write (.csv or .parquet).")],
    rows: Annotated[int, typer.Option(min=1, help="Rows to write.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the sampling / synthetic series.")] = 11,
) -> None:
    """Write scoring input for a lab model (features only, no target)."""
    typer.echo(f"wrote {rows} rows of {model} input to {write(model, output, rows, seed)}")
