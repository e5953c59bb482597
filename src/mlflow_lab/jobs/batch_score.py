"""Batch scoring: predictions for every row of a CSV or Parquet file, streamed in chunks.

Loads `models:/<name>/Production` (or any model URI), pinned to the version it resolved,
reads the input (local path, `s3://`, `mlflow-artifacts:/`, `runs:/`) chunk by chunk,
checks it against the model's signature, and writes the input rows with the predictions
beside them (CSV to CSV: the input's text with the predictions appended, scoring/
csv_passthrough; otherwise Arrow's readers and writers, scoring/tables). Classifiers (model
metadata `task: binary-classification`) get a `probability` and a 0/1 `decision` column;
other models a `prediction` column. The output
appears under its final name only when complete, and the job is logged as a
`batch_scoring` run.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import typer
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from tqdm import tqdm

from mlflow_lab import registry
from mlflow_lab.errors import LabError
from mlflow_lab.jobs import collector_paused
from mlflow_lab.jobs.runs import job_runs
from mlflow_lab.scoring import CLASSIFIER_TASK, conforming, csv_passthrough
from mlflow_lab.scoring.errors import RefusedRows, short_reason
from mlflow_lab.scoring.tables import ModelColumns, TableWriter, read_batches, row_count_hint, table_format

EXPERIMENT = "batch-scoring"


@dataclass(frozen=True)
class ScoreResult:
    output: Path
    rows: int
    seconds: float
    model_uri: str
    run_id: str | None


def is_local(uri: str) -> bool:
    return "://" not in uri and not uri.startswith(("mlflow-artifacts:", "runs:"))


def fetch_input(uri: str, workdir: Path) -> Path:
    """A local path for the input: remote URIs (s3://, mlflow-artifacts:/, runs:/) are downloaded first."""
    if is_local(uri):
        path = Path(uri)
        if not path.is_file():
            raise LabError(f"input file {uri} does not exist.")
        return path
    table_format(uri)
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(workdir)))
    except Exception as exc:  # noqa: BLE001 - boto3, HTTP and MLflow errors all mean "could not fetch"
        raise LabError(f"could not fetch input {uri}: {str(exc).splitlines()[0]}") from None


def default_output(input_uri: str) -> Path:
    name = Path(input_uri.rstrip("/").rsplit("/", 1)[-1])
    folder = Path(input_uri).parent if is_local(input_uri) else Path.cwd()
    return folder / f"{name.stem}.predictions{name.suffix}"


def load_model(model_uri: str) -> tuple[PyFuncModel, str]:
    """The model and the concrete URI it was loaded from (models:/ URIs pinned to a version)."""
    ref = registry.resolve(model_uri)
    concrete = ref.uri if ref else model_uri
    try:
        # suppress_warnings skips comparing the model's pip requirements with this environment
        # (~0.5 s of scanning installed packages per job); the lab's images pin both sides.
        with collector_paused():
            return mlflow.pyfunc.load_model(concrete, suppress_warnings=True), concrete
    except (MlflowException, OSError) as exc:
        raise LabError(f"could not load model {model_uri}: {str(exc).splitlines()[0]}") from None


def prediction_columns(predict: Callable, model: PyFuncModel, features: pd.DataFrame, threshold: float) -> dict[str, np.ndarray]:
    predicted = predict(features)
    if (model.metadata.metadata or {}).get("task") == CLASSIFIER_TASK:
        probability = np.asarray(predicted, dtype="float64").reshape(-1)
        return {"probability": probability, "decision": (probability >= threshold).astype("int64")}
    if isinstance(predicted, pd.DataFrame):
        return {f"prediction_{name}": predicted[name].to_numpy() for name in predicted.columns}
    predicted = np.asarray(predicted)
    if predicted.ndim == 2 and predicted.shape[1] > 1:
        return {f"prediction_{i}": predicted[:, i] for i in range(predicted.shape[1])}
    return {"prediction": predicted.reshape(-1)}


def batch_predictor(model: PyFuncModel, columns: ModelColumns, threshold: float) -> Callable[[pa.RecordBatch], dict]:
    """Output columns for a batch of input rows; RefusedRows when the model refuses them."""
    # The readers give every batch the signature's column types (ModelColumns); for a signature of
    # double and long columns only, a batch with nothing missing is what schema enforcement would make.
    exact = conforming.signature_dtypes(model) is not None
    fast = conforming.conforming_predictor(model)

    def predict(batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        features = batch.select(list(columns.types))
        conforms = exact and all(column.null_count == 0 for column in features.columns)
        try:
            return prediction_columns(fast if conforms else model.predict, model, features.to_pandas(), threshold)
        except (MlflowException, ValueError, TypeError) as exc:  # schema enforcement, or the model itself (e.g. NaN)
            raise RefusedRows(short_reason(exc)) from None

    return predict


def score_file(
    model, source: Path, output: Path, keep: tuple[str, ...] = (), threshold: float = 0.5, chunk_rows: int = 100_000
) -> int:
    """Score `source` into `output`; returns the row count. `output` exists only if this succeeded."""
    columns = ModelColumns.from_schema(model.metadata.get_input_schema())
    predict = batch_predictor(model, columns, threshold)
    partial = output.with_name(f".{output.name}.partial")
    progress = tqdm(total=row_count_hint(source), unit="rows", unit_scale=True, disable=None, leave=False)
    try:
        if csv_passthrough.applies(source, output):
            rows = csv_passthrough.score(source, partial, columns, keep, predict, progress.update)
        else:
            rows = _score_tables(source, partial, table_format(output), columns, keep, predict, chunk_rows, progress.update)
        if rows == 0:
            raise LabError(f"{source} has a header but no rows.")
        os.replace(partial, output)
        return rows
    finally:
        progress.close()
        partial.unlink(missing_ok=True)


def _score_tables(source: Path, partial: Path, fmt: str, columns, keep, predict, chunk_rows: int, progress) -> int:
    """Any input and output format: Arrow record batches in, values formatted by Arrow's writers."""
    writer, rows = TableWriter(partial, fmt), 0
    try:
        for batch in read_batches(source, columns, keep, chunk_rows):
            try:
                predictions = predict(batch)
            except RefusedRows as exc:
                raise LabError(f"{source}, rows {rows + 1}-{rows + batch.num_rows}: {exc}") from None
            table = pa.Table.from_batches([batch])
            for name, values in predictions.items():
                table = table.append_column(name, pa.array(values))
            writer.write(table)
            rows += batch.num_rows
            progress(batch.num_rows)
    finally:
        writer.close()
    return rows


def score(
    model_uri: str,
    input_uri: str,
    output: Path | None = None,
    keep: tuple[str, ...] = (),
    threshold: float = 0.5,
    chunk_rows: int = 100_000,
    log_run: bool = True,
) -> ScoreResult:
    model, concrete_uri = load_model(model_uri)
    output = output or default_output(input_uri)
    table_format(output)
    with tempfile.TemporaryDirectory(prefix="batch-score-") as workdir:
        source = fetch_input(input_uri, Path(workdir))
        started = time.perf_counter()
        rows = score_file(model, source, output, keep, threshold, chunk_rows)
        seconds = time.perf_counter() - started
    run_id = log_scoring_run(model_uri, concrete_uri, input_uri, output, rows, seconds) if log_run else None
    return ScoreResult(output, rows, seconds, concrete_uri, run_id)


def log_scoring_run(model_uri: str, concrete_uri: str, input_uri: str, output: Path, rows: int, seconds: float) -> str:
    name, _, version = concrete_uri.removeprefix("models:/").partition("/")
    with job_runs(EXPERIMENT) as start_run, start_run("batch_scoring") as run:
        mlflow.log_params(
            {
                "model_uri": model_uri,
                "model_name": name if version else "",
                "model_version": version,
                "input": input_uri,
                "output": output.name,
            }
        )
        mlflow.log_metrics(
            {"input_rows": rows, "output_rows": rows, "duration_s": seconds, "rows_per_s": rows / seconds if seconds else 0.0}
        )
        mlflow.log_artifact(str(output), "predictions")
    return run.info.run_id


def main(
    input_uri: Annotated[
        str, typer.Argument(metavar="INPUT", help="CSV or Parquet: a path, s3://, mlflow-artifacts:/ or runs:/ URI.")
    ],
    model_uri: Annotated[
        str,
        typer.Option(
            "--model-uri",
            envvar="SCORE_MODEL_URI",
            help="Model to use: models:/<name>/Production, models:/<name>@champion, runs:/..., a path.",
        ),
    ] = "models:/wine-quality/Production",
    output: Annotated[
        Path | None,
        typer.Option(
            help="Output file (.csv or .parquet); default: <input>.predictions.<ext> beside a local input, "
            "else in the current directory."
        ),
    ] = None,
    keep: Annotated[
        list[str] | None,
        typer.Option(help="Input column that is not a model input but is copied to the output (e.g. an id); repeatable."),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, envvar="SCORE_THRESHOLD", help="Classifiers: probability at or above which the decision is 1."
        ),
    ] = 0.5,
    chunk_rows: Annotated[int, typer.Option(min=1, help="Rows per chunk (Parquet); CSV chunks are 1 MB of text.")] = 100_000,
    log_run: Annotated[bool, typer.Option(help="Log a batch_scoring run (counts, duration, output artifact).")] = True,
) -> None:
    """Score a file with a registered model and write the rows with their predictions."""
    result = score(model_uri, input_uri, output, tuple(keep or ()), threshold, chunk_rows, log_run)
    typer.echo(
        f"scored {result.rows} rows with {result.model_uri} in {result.seconds:.2f} s "
        f"({result.rows / max(result.seconds, 1e-9):,.0f} rows/s) -> {result.output}"
        + (f"  (run {result.run_id})" if result.run_id else "")
    )
